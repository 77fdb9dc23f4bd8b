"""The engine comparison's subset in Apache Flink (PyFlink Table API, batch
mode) over adflow's events written as CSV by adgen.

Run by `benches/engines.rs`, which checks the answer against adflow's:

    python3 flink_subset.py --input DIR --out OUT --parallelism 2

DIR holds `dt=YYYY-MM-DD/part-*.csv` (header line, adflow's columns; see
docs/schema.md). Timed (printed as `elapsed_seconds=`): the one job that
reads every file, deduplicates, computes hourly metrics and last-touch
attribution and writes both results as CSV part files into OUT/hourly.csv/
and OUT/last_touch.csv/ (no header; columns as in duckdb_subset.py).
Excluded: starting the JVM and the table environment. Same semantics as
duckdb_subset.py, without ASOF joins (Flink has none): the touches in
window are joined and ranked instead.
"""

import argparse
import os
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

DAY_MS = 86_400_000
DEDUP_WINDOW_MS = DAY_MS
CLICK_WINDOW_MS = 30 * DAY_MS
VIEW_WINDOW_MS = DAY_MS

COLUMNS = [
    "event_id", "kind", "ts", "user_id", "device_id", "campaign_id", "ad_id",
    "publisher_id", "ip", "user_agent", "country", "device_type", "cost",
    "revenue", "conversion_type", "order_id",
]


def ddl(env, input_dir, out_dir):
    columns = ", ".join(f"`{name}` STRING" for name in COLUMNS)
    env.execute_sql(f"""
        CREATE TABLE raw_events ({columns}, dt STRING) PARTITIONED BY (dt) WITH (
            'connector' = 'filesystem', 'path' = 'file://{input_dir}', 'format' = 'csv')
    """)
    env.execute_sql(f"""
        CREATE TABLE hourly_out (bucket_ms BIGINT, campaign_id STRING, ad_id STRING,
            country STRING, device_type STRING, impressions BIGINT, clicks BIGINT,
            cost_micros BIGINT) WITH (
            'connector' = 'filesystem', 'path' = 'file://{out_dir}/hourly.csv', 'format' = 'csv')
    """)
    env.execute_sql(f"""
        CREATE TABLE last_touch_out (event_id STRING, campaign_id STRING, ad_id STRING,
            revenue_micros BIGINT) WITH (
            'connector' = 'filesystem', 'path' = 'file://{out_dir}/last_touch.csv', 'format' = 'csv')
    """)
    # The header line of every file is dropped by the kind filter.
    env.execute_sql("""
        CREATE TEMPORARY VIEW events AS
        SELECT event_id, kind,
               UNIX_TIMESTAMP(SUBSTRING(ts FROM 1 FOR 19), 'yyyy-MM-dd''T''HH:mm:ss') * 1000
                 + CAST(SUBSTRING(ts FROM 21 FOR 3) AS BIGINT) AS ts,
               NULLIF(campaign_id, '') AS campaign_id, NULLIF(ad_id, '') AS ad_id,
               COALESCE(UPPER(NULLIF(country, '')), '??') AS country,
               LOWER(COALESCE(device_type, '')) AS device_type,
               CAST(CAST(COALESCE(NULLIF(cost, ''), '0') AS DECIMAL(18, 6)) * 1000000 AS BIGINT) AS cost_micros,
               CAST(CAST(COALESCE(NULLIF(revenue, ''), '0') AS DECIMAL(18, 6)) * 1000000 AS BIGINT) AS revenue_micros,
               NULLIF(order_id, '') AS order_id,
               CASE WHEN NULLIF(user_id, '') IS NOT NULL THEN CONCAT('u:', user_id)
                    ELSE CONCAT('d:', device_id) END AS who
        FROM raw_events WHERE kind IN ('impression', 'click', 'conversion', 'page_view')
    """)
    fields = "event_id, kind, ts, campaign_id, ad_id, country, device_type, cost_micros, revenue_micros, order_id, who"
    env.execute_sql(f"""
        CREATE TEMPORARY VIEW by_id AS
        SELECT {fields} FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY ts) AS copy_no,
                   MIN(ts) OVER (PARTITION BY event_id ORDER BY ts) AS first_ts
            FROM events)
        WHERE copy_no = 1 OR ts >= first_ts + {DEDUP_WINDOW_MS}
    """)
    env.execute_sql(f"""
        CREATE TEMPORARY VIEW uniq AS
        SELECT {fields} FROM by_id WHERE kind <> 'conversion' OR order_id IS NULL
        UNION ALL
        SELECT {fields} FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY who, order_id ORDER BY ts, event_id) AS copy_no,
                   MIN(ts) OVER (PARTITION BY who, order_id ORDER BY ts) AS first_ts
            FROM by_id WHERE kind = 'conversion' AND order_id IS NOT NULL)
        WHERE copy_no = 1 OR ts >= first_ts + {DEDUP_WINDOW_MS}
    """)
    env.execute_sql("""
        CREATE TEMPORARY VIEW conversions AS
        SELECT event_id, ts, who, revenue_micros FROM uniq WHERE kind = 'conversion'
    """)
    for name, kind, window in (("best_click", "click", CLICK_WINDOW_MS),
                               ("best_view", "impression", VIEW_WINDOW_MS)):
        env.execute_sql(f"""
            CREATE TEMPORARY VIEW {name} AS
            SELECT event_id, campaign_id, ad_id FROM (
                SELECT c.event_id, t.campaign_id, t.ad_id,
                       ROW_NUMBER() OVER (PARTITION BY c.event_id
                                          ORDER BY t.ts DESC, t.event_id DESC) AS rank_no
                FROM conversions c JOIN uniq t
                  ON t.who = c.who AND t.kind = '{kind}'
                 AND t.ts <= c.ts AND t.ts >= c.ts - {window})
            WHERE rank_no = 1
        """)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--parallelism", type=int, default=2)
    args = parser.parse_args()
    input_dir = os.path.abspath(args.input)
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)

    env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    config = env.get_config()
    config.set("parallelism.default", str(args.parallelism))
    config.set("table.local-time-zone", "UTC")
    ddl(env, input_dir, out_dir)

    statements = env.create_statement_set()
    statements.add_insert_sql("""
        INSERT INTO hourly_out
        SELECT (ts / 3600000) * 3600000, campaign_id, ad_id, country, device_type,
               SUM(CASE WHEN kind = 'impression' THEN 1 ELSE 0 END),
               SUM(CASE WHEN kind = 'click' THEN 1 ELSE 0 END),
               SUM(cost_micros)
        FROM uniq WHERE kind IN ('impression', 'click')
        GROUP BY (ts / 3600000) * 3600000, campaign_id, ad_id, country, device_type
    """)
    statements.add_insert_sql("""
        INSERT INTO last_touch_out
        SELECT c.event_id,
               CASE WHEN k.event_id IS NOT NULL THEN k.campaign_id ELSE v.campaign_id END,
               CASE WHEN k.event_id IS NOT NULL THEN k.ad_id ELSE v.ad_id END,
               c.revenue_micros
        FROM conversions c
        LEFT JOIN best_click k ON k.event_id = c.event_id
        LEFT JOIN best_view v ON v.event_id = c.event_id
    """)
    started = time.perf_counter()
    statements.execute().wait()
    elapsed = time.perf_counter() - started
    print(f"elapsed_seconds={elapsed:.6f}")


if __name__ == "__main__":
    main()
