"""The JSON bodies of the validation benchmarks (bench/validate.sh and
bench/paired.sh's `post` and `validated` cases): a customer object (email,
name) and as many order items (sku matching ^[A-Z]{3}-[0-9]{4}$, qty, price,
a date-time) as bring it to about the size asked, items varied (~90 bytes
each). Their schema is bench/orders-schema.json.

    python3 bench/orders.py DIR KIB...

writes DIR/body-<KIB>.json and DIR/items-<KIB> (the item count) for each
size, and three invalid variants of a 12-item body: DIR/bad-email.json,
DIR/bad-sku.json, DIR/bad-date.json.
"""
import json
import sys


def item(i):
    sku = "%s-%04d" % ("".join(chr(65 + (i * k + 7) % 26) for k in (1, 3, 5)), (i * 37) % 10000)
    return {"sku": sku, "qty": 1 + i % 9, "price": 10 + (i * 13 % 8900) / 100,
            "added": "2024-%02d-%02dT%02d:%02d:%02dZ" % (1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 7) % 60)}


def body(n):
    return {"customer": {"email": "jane.doe@example.com", "name": "Jane Doe"}, "items": [item(i) for i in range(n)]}


def enc(b):
    return json.dumps(b, separators=(",", ":")).encode()


def main(work, sizes):
    for kib in sizes:
        target, n = kib * 1024, 1
        while len(enc(body(n + 1))) <= target:
            n += 1
        with open(f"{work}/body-{kib}.json", "wb") as f:
            f.write(enc(body(n)))
        with open(f"{work}/items-{kib}", "w") as f:
            f.write(str(n))
    for name, change in [
        ("bad-email", lambda b: b["customer"].update(email="not-an-email")),
        ("bad-sku", lambda b: b["items"][3].update(sku="abc-12")),
        ("bad-date", lambda b: b["items"][5].update(added="2024-13-45 25:00")),
    ]:
        bad = body(12)
        change(bad)
        with open(f"{work}/{name}.json", "wb") as f:
            f.write(enc(bad))


if __name__ == "__main__":
    main(sys.argv[1], [int(s) for s in sys.argv[2:]])
