//! The wire schema shared by every format: field names (JSON keys and CSV
//! header, in this order) and the Arrow/Parquet schema. Documented in
//! `docs/schema.md`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

/// Wire field names, in CSV column order.
pub const FIELDS: [&str; 16] = [
    "event_id",
    "kind",
    "ts",
    "user_id",
    "device_id",
    "campaign_id",
    "ad_id",
    "publisher_id",
    "ip",
    "user_agent",
    "country",
    "device_type",
    "cost",
    "revenue",
    "conversion_type",
    "order_id",
];

/// Decimal precision of money columns in Parquet.
pub const MONEY_PRECISION: u8 = 18;
/// Decimal scale of money columns in Parquet: six places, so the stored
/// integer is exactly the amount in micros.
pub const MONEY_SCALE: i8 = 6;

/// Longest accepted record (a JSONL or CSV line, or a Parquet row's text), in bytes.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The Arrow schema adflow writes to Parquet. `event_id`, `kind` and `ts`
/// are required; every other column is nullable.
pub fn event_arrow_schema() -> Arc<Schema> {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let money = |name: &str| {
        Field::new(
            name,
            DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE),
            true,
        )
    };
    Arc::new(Schema::new(vec![
        text("event_id", false),
        text("kind", false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        text("user_id", true),
        text("device_id", true),
        text("campaign_id", true),
        text("ad_id", true),
        text("publisher_id", true),
        text("ip", true),
        text("user_agent", true),
        text("country", true),
        text("device_type", true),
        money("cost"),
        money("revenue"),
        text("conversion_type", true),
        text("order_id", true),
    ]))
}
