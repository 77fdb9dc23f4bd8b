"""The engine comparison's subset in DuckDB SQL over adflow's Parquet files.

Run by `benches/engines.rs`, which checks the answer against adflow's:

    python3 duckdb_subset.py --input DIR --out OUT --threads 2

Timed (printed as `elapsed_seconds=`): reading every Parquet file under DIR,
dedup, hourly metrics and last-touch attribution, each result materialised
as a DuckDB table in memory. Untimed: writing the two results as CSV into
OUT (`hourly.csv`, `last_touch.csv`) for the check. The semantics are
adflow's (docs/operators.md), without fraud, as docs/benchmarks.md states.
"""

import argparse
import os
import time

import duckdb

DAY_MS = 86_400_000
DEDUP_WINDOW_MS = DAY_MS
CLICK_WINDOW_MS = 30 * DAY_MS
VIEW_WINDOW_MS = DAY_MS

QUERIES = [
    # The events, with absent (null or empty) ids as NULL and the identity
    # attribution and order dedup use: the user, else the device.
    f"""
    CREATE TEMP TABLE events AS
    SELECT event_id, kind, epoch_ms(ts) AS ts,
           NULLIF(campaign_id, '') AS campaign_id, NULLIF(ad_id, '') AS ad_id,
           coalesce(upper(NULLIF(country, '')), '??') AS country,
           lower(coalesce(device_type, '')) AS device_type,
           CAST(coalesce(cost, 0) * 1000000 AS BIGINT) AS cost_micros,
           CAST(coalesce(revenue, 0) * 1000000 AS BIGINT) AS revenue_micros,
           NULLIF(order_id, '') AS order_id,
           CASE WHEN NULLIF(user_id, '') IS NOT NULL THEN 'u:' || user_id
                ELSE 'd:' || NULLIF(device_id, '') END AS identity
    FROM read_parquet('{{input}}/**/*.parquet')
    """,
    # Dedup step 1: per event id, the first copy is kept; a later copy is a
    # duplicate unless it is a window or more after the first.
    f"""
    CREATE TEMP TABLE by_id AS
    SELECT * EXCLUDE (copy, first_ts) FROM (
        SELECT *, row_number() OVER (PARTITION BY event_id ORDER BY ts) AS copy,
               min(ts) OVER (PARTITION BY event_id) AS first_ts
        FROM events)
    WHERE copy = 1 OR ts >= first_ts + {DEDUP_WINDOW_MS}
    """,
    # Dedup step 2: the same per (identity, order id) among conversions.
    f"""
    CREATE TEMP TABLE uniq AS
    SELECT * FROM by_id WHERE kind <> 'conversion' OR order_id IS NULL
    UNION ALL
    SELECT * EXCLUDE (copy, first_ts) FROM (
        SELECT *, row_number() OVER (PARTITION BY identity, order_id ORDER BY ts, event_id) AS copy,
               min(ts) OVER (PARTITION BY identity, order_id) AS first_ts
        FROM by_id WHERE kind = 'conversion' AND order_id IS NOT NULL)
    WHERE copy = 1 OR ts >= first_ts + {DEDUP_WINDOW_MS}
    """,
    # Hourly metrics of impressions and clicks.
    """
    CREATE TEMP TABLE hourly AS
    SELECT (ts // 3600000) * 3600000 AS bucket_ms, campaign_id, ad_id, country, device_type,
           count(*) FILTER (WHERE kind = 'impression') AS impressions,
           count(*) FILTER (WHERE kind = 'click') AS clicks,
           sum(cost_micros) AS cost_micros
    FROM uniq WHERE kind IN ('impression', 'click')
    GROUP BY ALL
    """,
    # Last touch: the latest click at or before the conversion within the
    # click window; failing that the latest impression within the view window.
    f"""
    CREATE TEMP TABLE last_touch AS
    WITH conversions AS (
        SELECT event_id, ts, identity, revenue_micros FROM uniq WHERE kind = 'conversion'),
    clicks AS (SELECT identity, ts, campaign_id, ad_id FROM uniq WHERE kind = 'click'),
    views AS (SELECT identity, ts, campaign_id, ad_id FROM uniq WHERE kind = 'impression'),
    by_click AS (
        SELECT c.event_id, c.ts, c.identity, c.revenue_micros,
               CASE WHEN c.ts - k.ts <= {CLICK_WINDOW_MS} THEN k.campaign_id END AS campaign_id,
               CASE WHEN c.ts - k.ts <= {CLICK_WINDOW_MS} THEN k.ad_id END AS ad_id
        FROM conversions c ASOF LEFT JOIN clicks k ON c.identity = k.identity AND c.ts >= k.ts),
    by_view AS (
        SELECT b.event_id, b.revenue_micros,
               CASE WHEN b.ts - v.ts <= {VIEW_WINDOW_MS} THEN v.campaign_id END AS campaign_id,
               CASE WHEN b.ts - v.ts <= {VIEW_WINDOW_MS} THEN v.ad_id END AS ad_id
        FROM (SELECT * FROM by_click WHERE campaign_id IS NULL) b
        ASOF LEFT JOIN views v ON b.identity = v.identity AND b.ts >= v.ts)
    SELECT event_id, campaign_id, ad_id, revenue_micros FROM by_click WHERE campaign_id IS NOT NULL
    UNION ALL
    SELECT event_id, campaign_id, ad_id, revenue_micros FROM by_view
    """,
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    con.execute("SET preserve_insertion_order = false")
    started = time.perf_counter()
    for query in QUERIES:
        con.execute(query.replace("{input}", args.input))
    elapsed = time.perf_counter() - started

    for table in ("hourly", "last_touch"):
        path = os.path.join(args.out, f"{table}.csv")
        con.execute(f"COPY {table} TO '{path}' (HEADER, DELIMITER ',')")
    print(f"elapsed_seconds={elapsed:.6f}")


if __name__ == "__main__":
    main()
