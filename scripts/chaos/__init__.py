"""`make chaos`: the fault run. The whole pipeline (relay, transformer, sink, chDB) runs against a
private 3-node Kafka cluster, a private MariaDB database and a private chDB directory, and is put
through the failures the pipeline promises to survive:

1. poison records of each dead-letter kind injected into the live topics while orders flow;
2. one partition without enough in-sync replicas while the others work;
3. two relays, the first stalled mid-publish past its lease;
4. the totals: every order in ClickHouse at its latest version, nothing lost, nothing counted twice.

It prints a table of counts and exits 0 only when every check passed (README, "Fault run").
"""
