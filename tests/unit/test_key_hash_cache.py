"""The producer's partitioner with remembered key hashes picks what aiokafka's default picks."""

from aiokafka.partitioner import DefaultPartitioner

from blipwatch.kafka.partitioner import KeyHashCache


def test_same_partition_as_aiokafkas_default_partitioner_for_every_key_and_partition_count():
    cached, default = KeyHashCache(max_keys=50), DefaultPartitioner()
    for round_ in range(3):  # first sight, remembered, and after the cache was cleared
        for n in range(300):
            key = f"cart_abandonment_rate|country=C{n}".encode()
            for partitions in ([0], [0, 1, 2], list(range(4)), list(range(12))):
                assert cached(key, partitions, partitions) == default(key, partitions, partitions)
    assert len(cached.hashes) <= 50


def test_keyless_records_still_go_to_an_available_partition():
    assert KeyHashCache()(None, [0, 1, 2, 3], [2]) == 2
