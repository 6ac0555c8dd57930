#!/usr/bin/env python3
"""Pick a small committed corpus for one target out of a large work corpus.

    ./pick_corpus.py TARGET [MAX_FILES] [MAX_BYTES]    (defaults 48, 2048)

libFuzzer's merge pass records the code edges every input covers in a
control file; from the inputs of corpus/TARGET and work/TARGET this keeps
the hand-written seeds (`seed-*`: known attack shapes, kept whatever their
coverage) and adds, greedily, the input that brings the most edges not yet
covered (the smaller on a tie), until MAX_FILES. Inputs that break a
property without SLUICE_FUZZ_TOLERATE (the corpus replay tolerates nothing)
are left out. corpus/TARGET is rewritten; the picked files are named by the
SHA-1 of their content, as libFuzzer names them. Prints the edges kept.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

target = sys.argv[1]
max_files = int(sys.argv[2]) if len(sys.argv) > 2 else 48
max_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else 2048
here = os.path.dirname(os.path.abspath(__file__))
binary = os.path.join(here, "target/x86_64-unknown-linux-gnu/release", target)
corpus = os.path.join(here, "corpus", target)
work = os.path.join(here, "work", target)
env = {k: v for k, v in os.environ.items() if k != "SLUICE_FUZZ_TOLERATE"}

with tempfile.TemporaryDirectory() as tmp:
    control = os.path.join(tmp, "control")
    out = os.path.join(tmp, "out")
    os.mkdir(out)
    dirs = [d for d in (corpus, work) if os.path.isdir(d)]
    subprocess.run(
        [binary, "-merge=1", f"-merge_control_file={control}", "-timeout=10",
         "-rss_limit_mb=4096", out, *dirs],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
    )
    lines = open(control).read().splitlines()
    n_files = int(lines[0])
    files = lines[2:2 + n_files]
    features = {}
    for line in lines[2 + n_files:]:
        parts = line.split()
        if parts and parts[0] == "COV":
            features[int(parts[1])] = set(map(int, parts[2:]))

    def ok(path):
        """No property broken, nothing tolerated, within the size cap."""
        if os.path.getsize(path) > max_bytes:
            return False
        r = subprocess.run([binary, "-timeout=10", path], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return r.returncode == 0

    all_features = set().union(*features.values()) if features else set()
    chosen, covered = [], set()
    seeds = [i for i, f in enumerate(files) if os.path.basename(f).startswith("seed-")]
    for i in seeds:
        if ok(files[i]):
            chosen.append(i)
            covered |= features.get(i, set())
    rejected = set()
    while len(chosen) < max_files:
        best, best_score = None, 0.0
        for i, ft in features.items():
            if i in rejected or i in chosen:
                continue
            gain = len(ft - covered)
            if gain == 0:
                continue
            score = gain - os.path.getsize(files[i]) / (max_bytes + 1)
            if score > best_score:
                best, best_score = i, score
        if best is None:
            break
        if not ok(files[best]):
            rejected.add(best)
            continue
        chosen.append(best)
        covered |= features[best]
    picked = [(files[i], open(files[i], "rb").read()) for i in chosen]

shutil.rmtree(corpus, ignore_errors=True)
os.makedirs(corpus)
for path, data in picked:
    name = os.path.basename(path)
    if not name.startswith("seed-"):
        name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(corpus, name), "wb") as f:
        f.write(data)
print(f"{target}: {len(picked)} files, {sum(len(d) for _, d in picked)} bytes, "
      f"{len(covered)} of the {len(all_features)} edges of {len(files)} inputs")
