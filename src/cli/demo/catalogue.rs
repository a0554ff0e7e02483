//! The demo's generated shop, deterministic from a seed: a catalogue of items with titles,
//! categories, prices and stock; users with two favourite categories; and their views,
//! add-to-carts and purchases over the last 30 days, most of them in their favourite
//! categories and skewed towards each category's popular items — so that a trained model's
//! lists are ones a person can check by eye.

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// A category: its name, the price range of its items, and words its titles are made of.
struct Category {
    name: &'static str,
    prices: (f64, f64),
    first: &'static [&'static str],
    second: &'static [&'static str],
}

const CATEGORIES: &[Category] = &[
    Category {
        name: "Books",
        prices: (6.0, 35.0),
        first: &[
            "The Silent",
            "A Winter",
            "The Last",
            "Letters from the",
            "The Glass",
            "Under the",
            "The Forgotten",
            "Songs of the",
        ],
        second: &[
            "Harbor",
            "Orchard",
            "Cartographer",
            "Lighthouse",
            "Garden",
            "River",
            "Archive",
            "Mountain",
            "Station",
            "Island",
        ],
    },
    Category {
        name: "Music",
        prices: (8.0, 45.0),
        first: &[
            "Midnight", "Golden", "Electric", "Blue", "Northern", "Velvet", "Paper", "Neon",
        ],
        second: &[
            "Sessions (Vinyl)",
            "Hours (CD)",
            "Lights (Vinyl)",
            "Tapes",
            "Live in Lisbon",
            "Radio (CD)",
            "Standards",
            "Echoes (Vinyl)",
        ],
    },
    Category {
        name: "Kitchen",
        prices: (9.0, 180.0),
        first: &[
            "Cast-Iron",
            "Stainless",
            "Ceramic",
            "Carbon-Steel",
            "Enamelled",
            "Bamboo",
            "Copper",
            "Non-Stick",
        ],
        second: &[
            "Skillet 26 cm",
            "Dutch Oven",
            "Chef's Knife",
            "Saucepan Set",
            "Cutting Board",
            "Wok",
            "Espresso Pot",
            "Mixing Bowls",
        ],
    },
    Category {
        name: "Outdoors",
        prices: (15.0, 320.0),
        first: &[
            "Ultralight",
            "Waterproof",
            "Trail",
            "Alpine",
            "Insulated",
            "Packable",
            "Expedition",
            "Weekend",
        ],
        second: &[
            "Tent (2P)",
            "Rain Jacket",
            "Running Shoes",
            "Sleeping Bag",
            "Backpack 40 L",
            "Headlamp",
            "Trekking Poles",
            "Water Filter",
        ],
    },
    Category {
        name: "Games",
        prices: (12.0, 70.0),
        first: &[
            "Ticket to",
            "Lords of",
            "Castles of",
            "Secrets of",
            "Legends of",
            "Harbours of",
            "Empires of",
            "Gardens of",
        ],
        second: &[
            "Waterdeep",
            "Catan",
            "the Deep",
            "Avalon",
            "the North",
            "Venice",
            "Kyoto",
            "the Nile",
        ],
    },
    Category {
        name: "Garden",
        prices: (4.0, 140.0),
        first: &[
            "Heirloom",
            "Organic",
            "Dwarf",
            "Climbing",
            "Perennial",
            "Raised",
            "Self-Watering",
            "Wildflower",
        ],
        second: &[
            "Tomato Seeds",
            "Rose",
            "Planter",
            "Herb Kit",
            "Pruning Shears",
            "Compost Bin",
            "Lavender",
            "Bed Kit",
        ],
    },
    Category {
        name: "Films",
        prices: (7.0, 30.0),
        first: &[
            "Night",
            "The Long",
            "Summer",
            "The Quiet",
            "Return to",
            "City of",
            "The Great",
            "Beyond the",
        ],
        second: &[
            "Train (Blu-ray)",
            "Goodbye (DVD)",
            "in Rome (Blu-ray)",
            "Heist (4K)",
            "Voyage (DVD)",
            "Frontier (Blu-ray)",
            "Escape (4K)",
            "Shore (DVD)",
        ],
    },
    Category {
        name: "Toys",
        prices: (5.0, 90.0),
        first: &[
            "Wooden",
            "Magnetic",
            "Remote-Control",
            "Plush",
            "Building",
            "Musical",
            "Glow-in-the-Dark",
            "Puzzle",
        ],
        second: &[
            "Train Set",
            "Blocks",
            "Racing Car",
            "Dinosaur",
            "Rocket",
            "Xylophone",
            "Robot",
            "Castle",
        ],
    },
];

/// The event types, their weights and how often they happen.
const EVENT_TYPES: &[(&str, f64, f64)] = &[
    ("view", 1.0, 0.72),
    ("add_to_cart", 3.0, 0.18),
    ("purchase", 5.0, 0.10),
];

/// How big the generated shop is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Users.
    pub users: usize,
    /// Items per category.
    pub items_per_category: usize,
    /// Mean events per user.
    pub events_per_user: usize,
}

/// The shop as Arrow batches for the demo's tables.
pub struct Shop {
    /// `items (item_id, title, category, price, stock)`.
    pub items: RecordBatch,
    /// `users (user_id, favourite_category, second_category)`.
    pub users: RecordBatch,
    /// `events (user_id, item_id, event_type, weight, ts)`.
    pub events: Vec<RecordBatch>,
    /// Events in all.
    pub event_count: usize,
}

/// The SQL that creates the demo's tables.
pub const TABLES: &[&str] = &[
    "CREATE TABLE items (item_id TEXT PRIMARY KEY, title TEXT NOT NULL, category TEXT NOT NULL, \
     price DOUBLE NOT NULL, stock BIGINT NOT NULL)",
    "CREATE TABLE users (user_id TEXT PRIMARY KEY, favourite_category TEXT NOT NULL, \
     second_category TEXT NOT NULL)",
    "CREATE TABLE events (user_id TEXT NOT NULL, item_id TEXT NOT NULL, event_type TEXT NOT NULL, \
     weight DOUBLE NOT NULL, ts TIMESTAMP NOT NULL DEFAULT now())",
];

/// Generates the shop of `size` from `seed`, with event times in the 30 days before
/// `now_micros`.
pub fn generate(size: Size, seed: u64, now_micros: i64) -> datafusion::error::Result<Shop> {
    let mut rng = StdRng::seed_from_u64(seed);
    let per = size.items_per_category;
    let (mut ids, mut titles, mut categories, mut prices, mut stock) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (c, category) in CATEGORIES.iter().enumerate() {
        for i in 0..per {
            let first = category.first[i % category.first.len()];
            let second = category.second[(i / category.first.len()) % category.second.len()];
            let edition = i / (category.first.len() * category.second.len());
            let title = match edition {
                0 => format!("{first} {second}"),
                n => format!("{first} {second} No. {}", n + 1),
            };
            ids.push(format!("i{:05}", c * per + i));
            titles.push(title);
            categories.push(category.name);
            let (low, high) = category.prices;
            // whole euros less a cent, as shops price
            let euros = (low + rng.random::<f64>() * (high - low)).round();
            prices.push((euros * 100.0 - 1.0) / 100.0);
            stock.push(if rng.random::<f64>() < 0.15 {
                0
            } else {
                rng.random_range(1..60)
            });
        }
    }
    let items = RecordBatch::try_from_iter(vec![
        (
            "item_id",
            Arc::new(StringArray::from(ids.clone())) as ArrayRef,
        ),
        ("title", Arc::new(StringArray::from(titles))),
        ("category", Arc::new(StringArray::from(categories))),
        ("price", Arc::new(Float64Array::from(prices))),
        ("stock", Arc::new(Int64Array::from(stock))),
    ])?;
    let n = CATEGORIES.len();
    let (mut user_ids, mut favourites, mut seconds) = (Vec::new(), Vec::new(), Vec::new());
    let mut events = Vec::new();
    let mut columns = EventColumns::default();
    let mut event_count = 0;
    for u in 0..size.users {
        let user = format!("u{:05}", u + 1);
        let favourite = rng.random_range(0..n);
        let second = (favourite + rng.random_range(1..n)) % n;
        user_ids.push(user.clone());
        favourites.push(CATEGORIES[favourite].name);
        seconds.push(CATEGORIES[second].name);
        let count = rng.random_range(size.events_per_user / 2..=size.events_per_user * 3 / 2);
        for _ in 0..count {
            let draw: f64 = rng.random();
            let category = match draw {
                d if d < 0.65 => favourite,
                d if d < 0.90 => second,
                _ => rng.random_range(0..n),
            };
            // popular items first: the square of a uniform draw favours low indexes
            let within = ((rng.random::<f64>().powi(2)) * per as f64) as usize;
            let item = &ids[category * per + within.min(per - 1)];
            let mut pick: f64 = rng.random();
            let (event_type, weight) = EVENT_TYPES
                .iter()
                .find(|(_, _, share)| {
                    pick -= share;
                    pick < 0.0
                })
                .map_or(("view", 1.0), |(name, weight, _)| (*name, *weight));
            let age = rng.random_range(0..30 * 24 * 3600 * 1_000_000i64);
            columns.push(&user, item, event_type, weight, now_micros - age);
            event_count += 1;
            if columns.len() >= 8192 {
                events.push(columns.take()?);
            }
        }
    }
    if columns.len() > 0 {
        events.push(columns.take()?);
    }
    let users = RecordBatch::try_from_iter(vec![
        ("user_id", Arc::new(StringArray::from(user_ids)) as ArrayRef),
        (
            "favourite_category",
            Arc::new(StringArray::from(favourites)),
        ),
        ("second_category", Arc::new(StringArray::from(seconds))),
    ])?;
    Ok(Shop {
        items,
        users,
        events,
        event_count,
    })
}

#[derive(Default)]
struct EventColumns {
    users: Vec<String>,
    items: Vec<String>,
    types: Vec<&'static str>,
    weights: Vec<f64>,
    times: Vec<i64>,
}

impl EventColumns {
    fn push(&mut self, user: &str, item: &str, event_type: &'static str, weight: f64, ts: i64) {
        self.users.push(user.to_string());
        self.items.push(item.to_string());
        self.types.push(event_type);
        self.weights.push(weight);
        self.times.push(ts);
    }

    fn len(&self) -> usize {
        self.users.len()
    }

    fn take(&mut self) -> datafusion::error::Result<RecordBatch> {
        let taken = std::mem::take(self);
        Ok(RecordBatch::try_from_iter(vec![
            (
                "user_id",
                Arc::new(StringArray::from(taken.users)) as ArrayRef,
            ),
            ("item_id", Arc::new(StringArray::from(taken.items))),
            ("event_type", Arc::new(StringArray::from(taken.types))),
            ("weight", Arc::new(Float64Array::from(taken.weights))),
            ("ts", Arc::new(TimestampMicrosecondArray::from(taken.times))),
        ])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_shop() {
        let size = Size {
            users: 50,
            items_per_category: 20,
            events_per_user: 10,
        };
        let a = generate(size, 7, 1_000_000_000_000_000).unwrap();
        let b = generate(size, 7, 1_000_000_000_000_000).unwrap();
        assert_eq!(a.items, b.items);
        assert_eq!(a.events, b.events);
        assert_eq!(a.items.num_rows(), 20 * CATEGORIES.len());
        assert_eq!(a.users.num_rows(), 50);
        let rows: usize = a.events.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, a.event_count);
    }
}
