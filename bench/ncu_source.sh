#!/usr/bin/env bash
# Per-SASS-instruction warp-stall samples of one sm90 kernel launch, for finding where warps wait.
# Usage (after `make build`): bash bench/ncu_source.sh {fwd|bwd} D [causal]
# Writes $OUT/ncu_src_<mode>_d<D>.csv (ncu's source page) and prints the stall-heaviest
# instructions and a per-region summary (regions split at barriers / GEMM waits).
set -o pipefail
MODE=${1:-bwd}; D=${2:-128}; CAUSAL=${3:-}; OUT=${OUT:-/tmp/fa4_out}; mkdir -p "$OUT"
NAME=${MODE}_d${D}${CAUSAL:+_causal}
PYTHONPATH=. timeout 200 ncu --set full --import-source no --clock-control none --kernel-name regex:${MODE}_kernel \
  --launch-skip 0 --launch-count 1 -f -o /tmp/$NAME python3 bench/profile_$MODE.py $CAUSAL $D > "$OUT/ncu_full_$NAME.log" 2>&1 || { tail -20 "$OUT/ncu_full_$NAME.log"; exit 1; }
ncu -i /tmp/$NAME.ncu-rep --page source --print-source sass --csv > "$OUT/ncu_src_$NAME.csv" 2>&1
ncu -i /tmp/$NAME.ncu-rep --page details > "$OUT/ncu_details_$NAME.txt" 2>&1
python3 - "$OUT/ncu_src_$NAME.csv" <<'PY'
import csv, sys
f = open(sys.argv[1]); next(f)  # first line: kernel name
rows = list(csv.DictReader(f))
col = "Warp Stall Sampling (All Samples)"
tot = sum(float(r[col] or 0) for r in rows) or 1
marks = ("WARPGROUP.DEPBAR", "BAR.SYNC", "BAR.ARV", "SYNCS.PHASECHK", "WARPGROUP.ARRIVE", "EXIT")
start, acc = 0, 0.0
print(f"{len(rows)} instructions; regions with >= 1 % of samples:")
for i, r in enumerate(rows + [{"Source": "EXIT", col: 0}]):
    if any(m in r["Source"] for m in marks):
        if acc / tot >= 0.01:
            print(f"  {start:5d}-{i:5d} {acc / tot * 100:5.1f}%  {rows[start]['Source'][:70]}")
        start, acc = i, 0.0
    acc += float(r[col] or 0)
PY
