"""The reference side of benches/ann_speed.rs: hnswlib (PyPI) on the same vectors.

    python3 benches/hnswlib_ann.py ITEMS.f32 QUERIES.f32 DIM M EF[,EF...]

Files are little-endian float32, row-major. Builds an inner-product index with the given M and
ef_construction = 200 (TasteDB's build setting), then searches on one thread with each ef and
prints build seconds and, per ef, queries/s and recall@10 against exact inner product as JSON.
"""

import json
import sys
import time

import hnswlib
import numpy as np


def main():
    dim, m = int(sys.argv[3]), int(sys.argv[4])
    efs = [int(e) for e in sys.argv[5].split(",")]
    items = np.fromfile(sys.argv[1], dtype="<f4").reshape(-1, dim)
    queries = np.fromfile(sys.argv[2], dtype="<f4").reshape(-1, dim)
    index = hnswlib.Index(space="ip", dim=dim)
    started = time.perf_counter()
    index.init_index(max_elements=len(items), ef_construction=200, M=m, random_seed=1)
    index.add_items(items, np.arange(len(items)))
    build_seconds = time.perf_counter() - started
    index.set_num_threads(1)
    exact = np.argsort(-(queries @ items.T), axis=1)[:, :10]
    runs = []
    for ef in efs:
        index.set_ef(ef)
        started = time.perf_counter()
        found = [index.knn_query(q, k=10)[0][0] for q in queries]
        seconds = time.perf_counter() - started
        recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
        runs.append({"ef": ef, "queries_per_second": len(queries) / seconds,
                     "recall": float(recall)})
    print(json.dumps({"build_seconds": build_seconds, "runs": runs}))


if __name__ == "__main__":
    main()
