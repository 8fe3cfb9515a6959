# A Python program's heap, as bench/run-external measures it (run with
# PYTHONMALLOC=malloc so every object goes through the allocator under
# test): records built as dicts, a JSON round trip, a sort, string
# building, and a phase that drops most of what it made. Deterministic:
# it prints the same digest under any allocator.
import hashlib
import json

def records(n):
    out = []
    for i in range(n):
        out.append({
            "id": i,
            "name": "user-%d" % (i * 7919 % 100003),
            "tags": ["t%d" % (i % 17), "t%d" % (i % 5)],
            "score": (i * 2654435761) % 1000 / 10.0,
        })
    return out

h = hashlib.sha256()
for rnd in range(3):
    rs = records(50000)
    text = json.dumps(rs)
    back = json.loads(text)
    back.sort(key=lambda r: (r["score"], r["name"]))
    keep = [r for r in back if r["id"] % 10 == 0]
    parts = []
    for r in keep:
        parts.append("%s:%s;" % (r["name"], ",".join(r["tags"])))
    joined = "".join(parts)
    index = {}
    for r in back:
        index.setdefault(r["tags"][0], []).append(r["id"])
    h.update(joined.encode())
    h.update(str(sorted((k, len(v)) for k, v in index.items())).encode())
    del rs, text, back, index
print(h.hexdigest())
