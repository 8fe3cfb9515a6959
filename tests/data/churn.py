# Churns dicts, lists, sets and strings; prints digests of what it built.
import hashlib

def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]

table = {}
for i in range(200000):
    key = "k%d" % (i * 7919 % 100003)
    table.setdefault(key, []).append(i)
    if i % 5 == 0:
        table.pop("k%d" % (i * 31 % 100003), None)
print("dict", len(table), digest(sorted(table.items())[:1000]))

words = [("w%05d" % (i * 2654435761 % 99991)) * (1 + i % 7) for i in range(100000)]
words.sort()
joined = "".join(words[::97])
print("strings", len(words), len(joined), digest(joined))

s = set()
for i in range(150000):
    s.add(i * i % 65521)
    if i % 3 == 0:
        s.discard(i % 65521)
print("set", len(s), digest(sorted(s)))

nested = [[j for j in range(i % 50)] for i in range(20000)]
print("lists", sum(map(len, nested)), digest(nested[::500]))
big = bytearray(8 << 20)
big[::4096] = b"\x01" * (len(big) // 4096)
print("bytes", sum(big))
