"""Diversity on MovieLens 100K (issue 18): the quality / diversity trade-off of recommend's
MMR re-ranking by genre. An ALS model (the defaults of benches/experiments.sh) is trained on
80 % of the ratings (split by a CRC-32 of user and item); for each user with held-out ratings, the top 10 at
each diversity λ is scored by NDCG@10 against the held-out items and by the distinct first
genres in the list. Usage: python3 benches/diversity.py PORT ratings.csv genres.csv"""
import math
import sys
import time
import zlib

import psycopg

port, ratings, genres = sys.argv[1], sys.argv[2], sys.argv[3]
train, held = [], {}
for line in open(ratings):
    user, item, _ = line.strip().split(",")
    if zlib.crc32(f"{user}:{item}".encode()) % 5 == 0:
        held.setdefault(user, set()).add(item)
    else:
        train.append((user, item))
genre = dict(line.strip().split(",", 1) for line in open(genres))

with psycopg.connect(f"host=127.0.0.1 port={port} user=tastedb dbname=tastedb", autocommit=True) as db:
    db.execute("CREATE TABLE ml_train (user_id TEXT, item_id TEXT)")
    with db.cursor().copy("COPY ml_train FROM STDIN") as copy:
        for row in train:
            copy.write_row(row)
    db.execute("CREATE TABLE genres (item_id TEXT, genre TEXT)")
    with db.cursor().copy("COPY genres FROM STDIN") as copy:
        for row in genre.items():
            copy.write_row(row)
    db.execute(
        "TRAIN MODEL div USING als FROM ml_train WITH (factors = 64, iterations = 15, "
        "regularization = 20, alpha = 1, threads = 2, holdout = 0)"
    )
    print(f"{'diversity':>10} {'NDCG@10':>9} {'genres in top 10':>17} {'ms / list':>10}")
    users = sorted(held, key=int)
    for lam in (0.0, 0.1, 0.2, 0.3, 0.5, 0.7):
        sql = (
            f"SELECT item_id FROM recommend('div', %s, 10, diversity => {lam}, "
            "diversity_column => 'genre', items => 'genres')"
        )
        ndcg = distinct = 0.0
        started = time.time()
        for user in users:
            items = [r[0] for r in db.execute(sql, (user,), prepare=True)]
            truth = held[user]
            dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(items) if i in truth)
            ideal = sum(1 / math.log2(r + 2) for r in range(min(len(truth), 10)))
            ndcg += dcg / ideal
            distinct += len({genre.get(i, "unknown") for i in items})
        ms = (time.time() - started) * 1000 / len(users)
        print(f"{lam:>10} {ndcg / len(users):>9.4f} {distinct / len(users):>17.2f} {ms:>10.2f}")
