#!/usr/bin/env bash
# Per-SASS-instruction stall samples of the sm90 backward kernel (d given as $1, default 128),
# for finding where the consumer warps wait: writes $OUT/ncu_src_d$1.csv and prints the top rows.
# Usage (after `make build`): bash bench/ncu_source.sh 128
set -o pipefail
D=${1:-128}; OUT=${OUT:-/tmp/fa4_out}; mkdir -p "$OUT"
PYTHONPATH=. timeout 200 ncu --set full --import-source no --clock-control none --kernel-name regex:bwd_kernel \
  --launch-skip 0 --launch-count 1 -f -o /tmp/bwd_d$D python3 bench/profile_bwd.py $D > "$OUT/ncu_full_d$D.log" 2>&1 || { tail -20 "$OUT/ncu_full_d$D.log"; exit 1; }
ncu -i /tmp/bwd_d$D.ncu-rep --page source --print-source sass --csv > "$OUT/ncu_src_d$D.csv" 2>&1
ncu -i /tmp/bwd_d$D.ncu-rep --page details > "$OUT/ncu_details_d$D.txt" 2>&1
python3 - "$OUT/ncu_src_d$D.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
if not rows: sys.exit("no rows")
keys = list(rows[0].keys()); print("columns:", keys[:40])
col = next((k for k in keys if k.startswith("Warp Stall Sampling (All")), None)
if col is None: sys.exit("no sampling column")
tot = sum(float(r[col] or 0) for r in rows)
top = sorted(rows, key=lambda r: -float(r[col] or 0))[:40]
for r in top:
    print(f"{float(r[col])/tot*100:5.1f}%  {r.get('Address','')}  {r.get('Source','')[:90]}")
PY
