#!/usr/bin/env bash
# One call on a GPU machine with no network: build CIFAR-10 from the carried JPEG copy, pretrain
# ResNet-18 with the SGD recipe for a short full schedule (bf16), probe it, probe a random encoder,
# and print one table. Expects .devsite/ (hydra, omegaconf, antlr4 copied from a venv) and .devdata/
# (the JPEG copy and build_cifar10.py) in the checkout; writes logs and results under $OUT.
#   EPOCHS=15 bash benchmarks/gpu_check.sh
set -euo pipefail
export PYTHONPATH="$PWD/.devsite:$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/gpu_check}"; EPOCHS="${EPOCHS:-15}"; RUNS="${RUNS:-/tmp/gpu_check_runs}"
mkdir -p "$OUT" "$RUNS"  # run dirs (checkpoints) in $RUNS; logs and small results copied to $OUT
python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, '| lightning', pl.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[ -d data/cifar-10-batches-py ] || python3 .devdata/build_cifar10.py data --jpeg
# Throughput: the project's step against per-image torchvision transforms in 15 workers.
python3 benchmarks/throughput.py --workers 15 --out "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.log" | grep -vi warn
QUIET="trainer.enable_progress_bar=false data.download=false ${EXTRA:-}"

python3 train_ssl.py experiment=resnet18_sgd trainer.max_epochs="$EPOCHS" scheduler.warmup_epochs=1 \
  trainer.check_val_every_n_epoch="$EPOCHS" checkpoint.every_n_epochs="$EPOCHS" $QUIET \
  ${SSL_EXTRA:-} hydra.run.dir="$RUNS/ssl" 2>&1 | tee "$OUT/ssl.log" | grep -E "derived|done|Error|error" || true
python3 train_linear.py ckpt="$RUNS/ssl/checkpoints/last.ckpt" $QUIET 2>&1 | tee "$OUT/probe.log" | grep -E "linear probe|rror" || true
python3 train_linear.py model="${RANDOM_MODEL:-resnet18}" $QUIET hydra.run.dir="$RUNS/random" 2>&1 | tee "$OUT/random.log" | grep -E "linear probe|rror" || true

cp "$RUNS/ssl/metrics.csv" "$OUT/ssl_metrics.csv"
cp "$RUNS"/ssl/linear/*/results.json "$OUT/probe_results.json"
cp "$RUNS/random/results.json" "$OUT/random_results.json"
python3 - "$OUT" <<'PY'
import csv, json, sys, statistics
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/ssl_metrics.csv")))
epoch_s = [float(r["time/epoch_s"]) for r in rows if r.get("time/epoch_s")]
vps = [float(r["time/views_per_s"]) for r in rows if r.get("time/views_per_s")]
knn = [float(r["val/knn_top1"]) for r in rows if r.get("val/knn_top1")]
probe = json.load(open(f"{out}/probe_results.json"))
rand = json.load(open(f"{out}/random_results.json"))
print(f"| epochs | median s/epoch (after epoch 1) | median views/s | kNN top-1 | probe top-1 | random-encoder probe |")
print(f"| {len(epoch_s)} | {statistics.median(epoch_s[1:] or epoch_s):.2f} | {statistics.median(vps[1:] or vps):.0f} "
      f"| {100*knn[-1]:.2f}% | {100*probe['test_top1']:.2f}% | {100*rand['test_top1']:.2f}% |")
print("first epoch s (includes cuDNN autotuning):", f"{epoch_s[0]:.2f}")
PY
