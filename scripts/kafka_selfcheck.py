#!/usr/bin/env python3
"""Checks a cluster started by scripts/kafka with a real librdkafka client.

Not used by scripts/kafka (which needs no Kafka client); this is how the
figures in docs/kafka-broker-notes.md were taken. It needs confluent-kafka,
which bundles librdkafka like Weir's rdkafka crate, in a throwaway venv:

  python3 -m venv /tmp/kvenv && /tmp/kvenv/bin/pip install confluent-kafka
  scripts/kafka start /tmp/k3 --brokers 3
  /tmp/kvenv/bin/python scripts/kafka_selfcheck.py /tmp/k3 [--failover] [--group-expiry MS,...]
  scripts/kafka stop /tmp/k3

Always: a topic with replication min(N,3) and min.insync.replicas=min(N,2)
is created and 3000 records produced with acks=all; a transaction is aborted
and one committed, and a read_committed consumer must see only the committed
records while read_uncommitted sees both.
--failover (N=3): `scripts/kafka kill DIR 2`, produce with acks=all while it
is down, `scripts/kafka restart DIR 2`, make node 2 the leader of the
partitions it is the preferred replica of and read everything back.
--group-expiry: for each session.timeout.ms given (or `default`, librdkafka's,
or `consumer`, the KIP-848 protocol whose session the broker sets), SIGKILL a
group member and time until a second member owns the partitions.
--hung-txn: for each transaction.timeout.ms given, SIGKILL a transactional
producer inside a transaction and time until a read_committed consumer gets
past it (the broker aborts it once the timeout has passed); MS+reinit: a new
producer with the same transactional.id aborts it at init_transactions.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka import ElectionType

HERE = os.path.dirname(os.path.abspath(__file__))


def say(msg):
    print(msg, flush=True)


def kafka(*args):
    t = time.monotonic()
    subprocess.run([os.path.join(HERE, "kafka"), *args], check=True)
    return time.monotonic() - t


def produce(bootstrap, topic, values, **extra):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **extra})
    failed = []
    for v in values:
        while True:
            try:
                p.produce(topic, v, on_delivery=lambda err, msg: err and failed.append(err))
                break
            except BufferError:
                p.poll(0.05)
    left = p.flush(60)
    assert left == 0 and not failed, f"{left} undelivered, errors {failed[:3]}"


def read_all(bootstrap, topic, isolation, expect_min=0, timeout=20):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    out, eof, deadline = [], set(), time.monotonic() + timeout
    while time.monotonic() < deadline and (len(eof) < len(md.partitions) or len(out) < expect_min):
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
                continue
            raise KafkaException(m.error())
        out.append(m.value())
    c.close()
    return out


def create_topic(bootstrap, topic, partitions, rf, min_isr):
    a = AdminClient({"bootstrap.servers": bootstrap})
    t = time.monotonic()
    fs = a.create_topics([NewTopic(topic, partitions, rf, config={"min.insync.replicas": str(min_isr)})])
    fs[topic].result(30)
    return a, time.monotonic() - t


def check_basic(bootstrap, nodes):
    rf, min_isr = min(nodes, 3), min(nodes, 2)
    topic = f"rf{rf}-{uuid.uuid4().hex[:6]}"
    a, dt = create_topic(bootstrap, topic, 3, rf, min_isr)
    while True:  # the new topic reaches the brokers' metadata a moment later
        md = a.list_topics(topic, timeout=10).topics[topic]
        if len(md.partitions) == 3 and all(len(pm.isrs) == rf for pm in md.partitions.values()):
            break
        time.sleep(0.05)
    isrs = {p: sorted(pm.isrs) for p, pm in md.partitions.items()}
    say(f"created {topic}: 3 partitions, replication {rf}, min.insync.replicas={min_isr} in {dt:.2f}s; ISR {isrs}")
    t = time.monotonic()
    produce(bootstrap, topic, [f"r{i}".encode() for i in range(3000)])
    say(f"produced 3000 records with acks=all in {time.monotonic() - t:.2f}s")
    got = read_all(bootstrap, topic, "read_committed", 3000)
    assert len(got) == 3000, len(got)
    say("read back 3000 records")
    return topic


def check_transactions(bootstrap, nodes):
    topic = f"txn-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic, 2, min(nodes, 3), min(nodes, 2))
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"check-{uuid.uuid4()}", "transaction.timeout.ms": 10000})
    t = time.monotonic()
    p.init_transactions(30)
    say(f"init_transactions {time.monotonic() - t:.2f}s")
    t = time.monotonic()
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, f"aborted-{i}".encode(), partition=i % 2)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, f"committed-{i}".encode(), partition=i % 2)
    p.commit_transaction(30)
    say(f"one transaction aborted, one committed, 5 records each, in {time.monotonic() - t:.2f}s")
    committed = sorted(v.decode() for v in read_all(bootstrap, topic, "read_committed", 5))
    uncommitted = sorted(v.decode() for v in read_all(bootstrap, topic, "read_uncommitted", 10))
    say(f"read_committed sees {committed}")
    say(f"read_uncommitted sees {uncommitted}")
    assert committed == [f"committed-{i}" for i in range(5)], committed
    assert uncommitted == sorted([f"aborted-{i}" for i in range(5)] + [f"committed-{i}" for i in range(5)]), uncommitted
    say("TRANSACTIONS OK: read_committed sees only the committed records, read_uncommitted both")


def check_failover(directory, bootstrap, topic):
    kafka("kill", directory, "2")
    t = time.monotonic()
    produce(bootstrap, topic, [f"down{i}".encode() for i in range(1000)], **{"message.timeout.ms": 60000})
    say(f"with node 2 killed: 1000 more records produced with acks=all in {time.monotonic() - t:.2f}s")
    dt = kafka("restart", directory, "2")
    say(f"restart of node 2 until back in sync: {dt:.2f}s")
    # Node 2 rejoined with its data: make it the leader of the partitions it
    # is the preferred replica of, and read everything back through it.
    a = AdminClient({"bootstrap.servers": bootstrap})
    md = a.list_topics(topic, timeout=10).topics[topic]
    mine = [p for p, pm in md.partitions.items() if pm.replicas[0] == 2]
    if mine:
        a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, p) for p in mine]).result(30)
    deadline = time.monotonic() + 15
    while True:
        md = a.list_topics(topic, timeout=10).topics[topic]
        if all(md.partitions[p].leader == 2 for p in mine) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    say(f"after restart and preferred election: leaders {({p: pm.leader for p, pm in md.partitions.items()})}, "
        f"ISR {({p: sorted(pm.isrs) for p, pm in md.partitions.items()})}")
    assert mine and all(md.partitions[p].leader == 2 for p in mine)
    got = read_all(bootstrap, topic, "read_committed", 4000, timeout=60)
    assert len(got) == 4000, len(got)
    say(f"read all 4000 records back, partitions {mine} from node 2")


TXN_PRODUCER = r"""
import sys, time
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "transactional.id": sys.argv[2], "transaction.timeout.ms": int(sys.argv[4])})
p.init_transactions(30)
p.begin_transaction()
p.produce(sys.argv[3], b"open-txn", partition=0)
p.flush(30)
print("IN TRANSACTION", flush=True)
time.sleep(3600)
"""


def check_hung_transaction(bootstrap, nodes, timeout_ms, reinit=False):
    """A transactional producer SIGKILLed inside a transaction: how long
    read_committed consumers of the partition see nothing new, left alone or
    (reinit) when a new producer with the same transactional.id starts."""
    topic = f"hung-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic, 1, min(nodes, 3), min(nodes, 2))
    txn_id = f"hung-{uuid.uuid4()}"
    proc = subprocess.Popen([sys.executable, "-c", TXN_PRODUCER, bootstrap, txn_id, topic, str(timeout_ms)],
                            stdout=subprocess.PIPE, text=True)
    assert "IN TRANSACTION" in proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t = time.monotonic()
    produce(bootstrap, topic, [b"after"])  # plain record behind the open transaction
    how = "left alone"
    if reinit:
        p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
        p.init_transactions(60)
        how = f"same transactional.id re-initialised after {time.monotonic() - t:.2f}s"
    got = read_all(bootstrap, topic, "read_committed", 1, timeout=timeout_ms / 1000 + 30)
    say(f"transaction.timeout.ms={timeout_ms}: producer SIGKILLed in a transaction, {how}; read_committed saw "
        f"the next record {time.monotonic() - t:.2f}s later ({[v.decode() for v in got]})")
    assert got == [b"after"], got


CONSUMER = r"""
import sys, time
from confluent_kafka import Consumer
conf = {"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "auto.offset.reset": "earliest"}
if sys.argv[4] == "consumer":  # KIP-848: the broker sets session and heartbeat
    conf["group.protocol"] = "consumer"
elif sys.argv[4] != "default":
    conf.update({"session.timeout.ms": int(sys.argv[4]), "heartbeat.interval.ms": max(100, int(sys.argv[4]) // 10)})
c = Consumer(conf)
c.subscribe([sys.argv[3]], on_assign=lambda c, ps: print("ASSIGNED", len(ps), flush=True))
while True:
    c.poll(0.2)
"""


def check_group_expiry(bootstrap, topic, session_ms):  # session_ms: ms, "default" or "consumer"
    group = f"expiry-{uuid.uuid4().hex[:6]}"
    args = [sys.executable, "-c", CONSUMER, bootstrap, group, topic, str(session_ms)]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    t = time.monotonic()
    while "ASSIGNED" not in first.stdout.readline():
        pass
    say(f"session.timeout.ms={session_ms}: first member assigned after {time.monotonic() - t:.2f}s")
    first.send_signal(signal.SIGKILL)
    first.wait()
    t = time.monotonic()
    second = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    while True:
        line = second.stdout.readline()
        if line.startswith("ASSIGNED") and int(line.split()[1]) > 0:
            break
    say(f"session.timeout.ms={session_ms}: member SIGKILLed, a new member owned the partitions {time.monotonic() - t:.2f}s later")
    second.kill()
    second.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--failover", action="store_true")
    ap.add_argument("--group-expiry", default="")
    ap.add_argument("--hung-txn", default="", help="transaction.timeout.ms values, comma-separated; MS+reinit: "
                    "then start a producer with the same transactional.id")
    args = ap.parse_args()
    bootstrap = open(os.path.join(args.dir, "bootstrap")).read().strip()
    nodes = len(bootstrap.split(","))
    say(f"cluster {bootstrap} ({nodes} node(s))")
    topic = check_basic(bootstrap, nodes)
    check_transactions(bootstrap, nodes)
    if args.failover:
        assert nodes == 3
        check_failover(args.dir, bootstrap, topic)
    for ms in filter(None, args.hung_txn.split(",")):
        check_hung_transaction(bootstrap, nodes, int(ms.removesuffix("+reinit")), ms.endswith("+reinit"))
    for ms in filter(None, args.group_expiry.split(",")):
        check_group_expiry(bootstrap, topic, ms)
    say("ALL CHECKS PASSED")


if __name__ == "__main__":
    main()
