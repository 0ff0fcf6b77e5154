#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets, fuzz/corpus/<target>/, from the project's test data.

Run once when a target is added or its input format changes, then commit the result (the files are small):

    fuzz/make_corpus.py [--build build/fuzz]

Sources: the JSON documents written in tests/**/*.cpp (raw string literals), the Thing Descriptions of
tests/core/data, the RFC 9535 compliance test suite (tests/query/data/jsonpath-cts.json: its queries, its
documents, its I-Regexp patterns), RFC 7396's examples, the settings table of README.md, and requests, tokens and
query strings written here. Each seed is named by the SHA-1 of its content, as libFuzzer names corpus files.

When the libFuzzer binaries of the fuzz preset exist under --build, each target's seeds are minimized with
libFuzzer's -merge=1 (only inputs that add coverage are kept); otherwise every seed is kept.
"""

import argparse
import base64
import hashlib
import hmac
import json
import pathlib
import re
import shutil
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
RS = "\x1e"  # the separator of two-part inputs (merge_patch, iregexp, jwt)
JWT_SECRET = b"fuzzing-secret-of-at-least-thirty-two-bytes"  # the HS256 key of fuzz/jwt.cpp
JWT_NOW = 1_800_000_000  # the time of fuzz/jwt.cpp


def raw_strings(path):
    """The raw string literals R"(...)" of a C++ file, adjacent literals joined as the compiler joins them."""
    text = path.read_text(encoding="utf-8")
    out, current, end = [], None, -1
    for m in re.finditer(r'R"\((.*?)\)"', text, re.S):
        if current is not None and text[end:m.start()].strip() == "":
            current += m.group(1)
        else:
            if current is not None:
                out.append(current)
            current = m.group(1)
        end = m.end()
    if current is not None:
        out.append(current)
    return out


def test_json_documents():
    docs = []
    for path in sorted((ROOT / "tests").rglob("*.cpp")):
        for s in raw_strings(path):
            try:
                json.loads(s)
            except ValueError:
                continue
            docs.append(s)
    return docs


def cts():
    return json.loads((ROOT / "tests/query/data/jsonpath-cts.json").read_text(encoding="utf-8"))["tests"]


def string_literals(selector):
    """The string literals of a JSONPath query (single or double quoted), unescaped as JSON would."""
    out = []
    for m in re.finditer(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", selector):
        body = m.group(1) if m.group(1) is not None else m.group(2)
        try:
            out.append(json.loads('"' + body.replace("\\'", "'").replace('"', '\\"').replace('\\\\"', '\\"') + '"'))
        except ValueError:
            out.append(body)
    return out


def json_body_seeds(docs):
    seeds = list(docs)
    seeds += [json.dumps(t["document"]) for t in cts() if "document" in t]
    seeds += [
        '{"id":"a","name":"b","enabled":true,"version":3,"amount":1.5,"properties":{"region":"eu","rank":2},'
        '"roles":["admin","auditor"],"document":{"x":[1,2,{"y":null}]},"created_at":"2026-01-01T00:00:00Z"}',
        '{"name":"x","version":1e3,"amount":-0.0,"roles":[1],"properties":{"rank":11,"other":1},"a/b~c":0}',
        "[" * 64 + "]" * 64,
        "[" * 65 + "]" * 65,
        '"\\ud800"',
        '{"a":1,"a":2}',
        "18446744073709551616",
        "-9223372036854775809",
        "1e400",
    ]
    return seeds


def jsonpath_seeds():
    return [t["selector"] for t in cts()] + [
        "$..*..*..*",
        "$[*,*,*,*][*,*]",
        "$[?search(@.description,'[a-z]{0,4900}z')]",
        "$.store.book[?@.price < 10 && @.category == 'reference'].title",
        "$.a[?length(@) > 1]",
        "$.o['~/','\\'']",
        "$..k.k.k",
        "$[?count(@..*) > 3]",
        "$[?value(@.a[0]) == 1]",
    ]


def iregexp_seeds():
    seeds = []
    texts = ["", "a", "abc", "2024-01-02", "caf\u00e9", "\u2603\U0001d11e", "line\nbreak", "x" * 100]
    for t in cts():
        sel = t["selector"]
        if "match(" not in sel and "search(" not in sel:
            continue
        for literal in string_literals(sel):
            for text in texts[:3]:
                seeds.append(literal + RS + text)
    seeds += [
        "[a-z]{0,4900}z" + RS + "a" * 200,
        "(a|b)*c" + RS + "ababababc",
        "\\p{Lu}\\P{L}+" + RS + "A123",
        "[^\\n\\r]*" + RS + "no break",
        "^a$" + RS + "a",
        "((((((((a))))))))" + RS + "a",
        "a{2,5}b?" + RS + "aaab",
        "[\\-\\]\\\\]" + RS + "]",
        ".",
        "x{1000}",
    ]
    return seeds


def thing_description_seeds(docs):
    seeds = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests/core/data").glob("*.td.json"))]
    seeds += [d for d in docs if "@context" in d]
    lamp = json.loads((ROOT / "tests/core/data/lamp_http.td.json").read_text(encoding="utf-8"))
    with_pose = dict(lamp)
    with_pose["twinbridge:pose"] = {"frame": "hall-2", "position": [1.5, 0, 2], "orientation": [0, 0, 0.7071068, 0.7071068]}
    seeds.append(json.dumps(with_pose))
    anonymous = dict(lamp)
    anonymous.pop("id", None)
    anonymous["@context"] = "https://www.w3.org/2019/wot/td/v1"
    seeds.append(json.dumps(anonymous))
    return seeds


def json_schema_seeds(docs):
    keys = ("service_charge", "service_level", "apis", "endpoints", "twins", "monitoring")
    seeds = [d for d in docs if any(k in d for k in keys)]
    seeds.append(json.dumps({
        "type": "payment", "name": "Pay", "description": "d", "properties": {"region": "eu"},
        "service_charge": {"model": "per-call", "amount": 0.01, "currency": "EUR", "unit": "call"},
        "service_level": {"availability": 99.9, "latency_ms": 200, "rate_limit": 100},
        "apis": [{"name": "pay", "method": "POST", "path": "/pay/{id}", "scopes": ["pay"],
                  "request_schema": {"type": "object"}, "response_schema": {"type": "object"}}],
        "endpoints": {"base_url": "https://pay.example", "health_url": "https://pay.example/health"},
        "monitoring": {"interval_s": 30, "timeout_s": 5, "failure_threshold": 3, "heartbeat_ttl_s": 90}}))
    return seeds


def merge_patch_seeds(docs):
    pairs = [
        ('{"a":"b"}', '{"a":"c"}'), ('{"a":"b"}', '{"b":"c"}'), ('{"a":"b"}', '{"a":null}'),
        ('{"a":"b","b":"c"}', '{"a":null}'), ('{"a":["b"]}', '{"a":"c"}'), ('{"a":"c"}', '{"a":["b"]}'),
        ('{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}'), ('{"a":[{"b":"c"}]}', '{"a":[1]}'),
        ('["a","b"]', '["c","d"]'), ('{"a":"b"}', '["c"]'), ('{"a":"foo"}', "null"), ('{"a":"foo"}', '"bar"'),
        ('{"e":null}', '{"a":1}'), ('[1,2]', '{"a":"b","c":null}'), ("{}", '{"a":{"bb":{"ccc":null}}}'),
    ]
    objects = [d for d in docs if d.lstrip().startswith("{")][:20]
    pairs += list(zip(objects, objects[1:]))
    return [t + RS + p for t, p in pairs]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_seeds():
    claims = {"sub": "metaverse-1", "iss": "https://issuer.example", "aud": "twinbridge", "exp": JWT_NOW + 600,
              "nbf": JWT_NOW - 10, "iat": JWT_NOW - 10}
    headers = [{"alg": "HS256", "typ": "JWT", "kid": "hs"}, {"alg": "HS256"}, {"alg": "RS256", "kid": "rs"},
               {"alg": "none"}, {"alg": "ES256", "kid": "es"}, {"alg": "HS256", "crit": ["exp"]}]
    variants = [claims, {**claims, "aud": ["other", "twinbridge"]}, {**claims, "exp": JWT_NOW - 3600},
                {**claims, "nbf": JWT_NOW + 3600}, {**claims, "exp": 1.8e9 + 0.5}, {**claims, "sub": ""},
                {k: v for k, v in claims.items() if k != "exp"}, {**claims, "exp": 9223372036854775807},
                {**claims, "iss": "someone"}]
    seeds = []
    for h in headers:
        for c in variants:
            seeds.append("\x01" + json.dumps(h) + RS + json.dumps(c))
    signing_input = b64(json.dumps(headers[0]).encode()) + "." + b64(json.dumps(claims).encode())
    mac = hmac.new(JWT_SECRET, signing_input.encode(), hashlib.sha256).digest()
    seeds.append("\x00" + signing_input + "." + b64(mac))
    seeds += ["\x00" + signing_input + "." + b64(b"\x00" * 64), "\x00a.b.c", "\x00...", "\x00" + signing_input,
              "\x00" + b64(b'{"alg":"ES256"}') + "." + b64(json.dumps(claims).encode()) + "." + b64(b"\x01" * 64)]
    return seeds


def http_head_seeds():
    return [
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v1/principals/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tbk_a_b\r\nX-Request-Id: r-1\r\n\r\n",
        "POST /v1/principals HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
        '{"id":"p-1"}\n',
        "PUT /things/urn:probe:%C3%A9 HTTP/1.1\r\nHost: x\r\nContent-Type: application/td+json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{\"a\":\r\n2\r\n1}\r\n0\r\nTrailer: t\r\n\r\n",
        "PATCH /v1/third-party-systems/a HTTP/1.1\r\nHost: x\r\nIf-Match: \"1\"\r\nExpect: 100-continue\r\n"
        "Content-Type: application/merge-patch+json\r\nContent-Length: 2\r\n\r\n{}",
        "GET /search/jsonpath?query=%24..*&x=1+2 HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n"
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 12\r\nIf-None-Match: W/\"3\", \"4\"\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "GET /x HTTP/1.1\r\nHost: x\r\nX-Long: " + "a" * 17000 + "\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    ]


def query_string_seeds():
    seeds = ["type=payment&filter=%24%5B%3F%40.service_charge.amount%20%3C%200.05%5D",
             "sort=-name&limit=1&cursor=abc", "limit=1000&exclude_down=true&status=down", "a=1&&b=&=c&d",
             "x=%zz", "x=%4", "q=a+b%2Bc", "/v1/principals/me", "/v1/principals/a%2Fb/keys/k",
             "/v1/twin-systems/s/twins/urn:x:%C3%A9", "/things/", "//", "/v1/principals/%", "/events/thing_created",
             "/search/jsonpath"]
    for t in cts()[:40]:
        seeds.append("query=" + "".join(c if c.isalnum() else "%%%02X" % ord(c) for c in t["selector"] if ord(c) < 128))
    return seeds


def config_seeds():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_.]+)` \| `[A-Z_]+` \| `--[a-z-]+` \| `([^`]*)` \|", readme, re.M)
    tables = {}
    for key, default in rows:
        section, _, name = key.rpartition(".")
        tables.setdefault(section, []).append((name, default))
    lines = []
    for section, items in tables.items():
        if section:
            lines.append(f"[{section}]")
        for name, default in items:
            if re.fullmatch(r"-?[0-9]+|true|false", default):
                lines.append(f"{name} = {default}")
            else:
                lines.append(f"{name} = {json.dumps(default)}")
    full = "\n".join(lines) + "\n"
    return [full, "", 'listen = "127.0.0.1:0"\nthreads = 2\n[limits]\nmax_body_bytes = 1024\n',
            '[auth.jwt]\nkeys = ["HS256:k:/nonexistent"]\nleeway_s = 5\n', "log.level = 'debug'\n",
            "[monitor]\nenabled = false\ninterval_ms = 1.5\n", "unknown = 1\n", "listen = [1, 2]\n",
            'a = """\nmulti\n"""\n[[x]]\ny = 1979-05-27T07:32:00Z\n']


def write(directory, seeds):
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        data = seed.encode("utf-8", "surrogatepass") if isinstance(seed, str) else seed
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=str(ROOT / "build/fuzz"), help="the fuzz preset's build directory")
    args = parser.parse_args()
    docs = test_json_documents()
    seeds = {
        "json_body": json_body_seeds(docs),
        "jsonpath": jsonpath_seeds(),
        "iregexp": iregexp_seeds(),
        "thing_description": thing_description_seeds(docs),
        "json_schema": json_schema_seeds(docs),
        "merge_patch": merge_patch_seeds(docs),
        "jwt": jwt_seeds(),
        "http_head": http_head_seeds(),
        "query_string": query_string_seeds(),
        "config": config_seeds(),
    }
    for target, target_seeds in seeds.items():
        corpus = ROOT / "fuzz/corpus" / target
        shutil.rmtree(corpus, ignore_errors=True)
        binary = pathlib.Path(args.build) / "fuzz" / f"fuzz_{target}"
        if binary.exists():
            with tempfile.TemporaryDirectory() as raw, tempfile.TemporaryDirectory() as crashes:
                write(pathlib.Path(raw), target_seeds)
                corpus.mkdir(parents=True)
                subprocess.run([str(binary), "-merge=1", f"-artifact_prefix={crashes}/", str(corpus), raw],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                crashed = sorted(pathlib.Path(crashes).iterdir())
                if crashed:
                    raise SystemExit(f"{target}: seeds crash the target: {[p.read_bytes()[:80] for p in crashed]}")
        else:
            write(corpus, target_seeds)
        print(f"{target}: {len(target_seeds)} seeds, {len(list(corpus.iterdir()))} kept")


if __name__ == "__main__":
    main()
