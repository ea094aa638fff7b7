"""DuckDB's side of the store's `history` bench (benches/store.rs).

Per asset, the peak and the 95th percentile (t-digest estimate, as the store's
approx_percentile_cont) over the day files under READINGS_DIR, on 2 threads; the
query runs three times and the median is printed as JSON with the run times.

Usage: python3 benches/history_duckdb.py READINGS_DIR   (needs `pip install duckdb`)
"""

import json
import sys
import time

import duckdb


def main() -> None:
    readings = sys.argv[1]
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    query = (
        "SELECT asset, max(value) AS peak, approx_quantile(value, 0.95) AS p95 "
        f"FROM read_parquet('{readings}/*/*.parquet') GROUP BY asset"
    )
    runs = []
    groups = 0
    for _ in range(3):
        began = time.perf_counter()
        groups = len(con.execute(query).fetchall())
        runs.append(round(time.perf_counter() - began, 3))
    print(
        json.dumps(
            {
                "seconds": sorted(runs)[1],
                "runs": runs,
                "groups": groups,
                "version": duckdb.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
