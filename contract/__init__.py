"""The event contract, written once (docs/events.md): the envelope the relay publishes, the order
snapshot it carries, and the analytics row the transformer produces and the sink loads.

Django-free, so the producer side (orders/), both consumers and the sink's column mapping import
the same typed models. The bounds of every field are the bounds of the ClickHouse column it lands
in (contract.types), so a value ClickHouse would refuse or silently alter is refused at decoding.
"""
