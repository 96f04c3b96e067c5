"""ClickHouse, owned in one place: the client boundary (`warehouse.client`), the schema and its
migration (`warehouse.schema`, DDL in `schema.sql`), the chDB gateway (`warehouse.chdb_gateway`)
and the SQL shell (`warehouse.shell`). The consumers, the analytics API, the benchmarks and the
operations scripts reach ClickHouse through this package."""
