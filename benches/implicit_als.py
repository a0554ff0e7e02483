"""The reference side of benches/als_speed.rs: trains the `implicit` library's ALS (PyPI) on
the same split and reports its training time, NDCG@10 and recommendation rate as JSON.

    python3 benches/implicit_als.py TRAIN.csv TEST.csv FACTORS ITERATIONS THREADS REG ALPHA

CSV rows are `user,item` (dense integer indexes). TasteDB's confidence is 1 + alpha * weight
and implicit's is its data value, so each interaction is given the value 1 + alpha: both solve
the same objective. NDCG@10 uses the protocol of benches/quality.rs (binary gain, training
items excluded).
"""

import json
import math
import sys
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits


def read(path):
    data = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    return data[:, 0], data[:, 1]


def main():
    train_path, test_path = sys.argv[1], sys.argv[2]
    factors, iterations, threads = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    regularization, alpha = float(sys.argv[6]), float(sys.argv[7])
    users, items = read(train_path)
    test_users, test_items = read(test_path)
    n_users = int(max(users.max(), test_users.max())) + 1
    n_items = int(max(items.max(), test_items.max())) + 1
    values = np.full(len(users), 1.0 + alpha, dtype=np.float32)
    matrix = sp.csr_matrix((values, (users, items)), shape=(n_users, n_items))
    matrix.sum_duplicates()

    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=factors,
        regularization=regularization,
        alpha=1.0,
        iterations=iterations,
        num_threads=threads,
        random_state=42,
        calculate_training_loss=False,
    )
    # implicit runs its own `threads` workers and asks for single-threaded BLAS inside them
    with threadpool_limits(limits=1, user_api="blas"):
        started = time.perf_counter()
        model.fit(matrix, show_progress=False)
        train_seconds = time.perf_counter() - started

        relevant = {}
        for u, i in zip(test_users, test_items):
            relevant.setdefault(int(u), set()).add(int(i))
        evaluated = np.array(sorted(relevant), dtype=np.int64)
        started = time.perf_counter()
        ids, _ = model.recommend(evaluated, matrix[evaluated], N=10, filter_already_liked_items=True)
        recommend_seconds = time.perf_counter() - started
    total = 0.0
    for row, user in enumerate(evaluated):
        wanted = relevant[int(user)]
        dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(ids[row]) if int(item) in wanted)
        ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(wanted), 10)))
        total += dcg / ideal
    print(json.dumps({
        "train_seconds": train_seconds,
        "ndcg": total / len(evaluated),
        "users": len(evaluated),
        "recs_per_second": len(evaluated) / recommend_seconds,
    }))


if __name__ == "__main__":
    main()
