#!/bin/sh
# Train SolarFlarePipeline on an offline GPU node that has Python and PyTorch but nothing else.
#
#   sh training/offline_gpu.sh PACK OUT [train_ddpm.py flags ...]
#
# Run from the checkout's root, with a pack of `solar-diffusion pack` and the wheels of
# `solar-diffusion gpu-wheels` in .whl. Installs the wheels and this checkout (pip, offline) into
# $SITE, trains from PACK (train_ddpm.py with --logger none --sample-steps 0, then your flags,
# which win), and writes to OUT the final pipeline in parts of at most 15 MB (export-parts:
# pipeline.tar.NNN and parts.json), train_summary.json (steps, images/s, why it stopped) and
# losses.jsonl. Back here: solar-diffusion assemble --parts OUT --out MODEL.
#
# Environment: PYTHON (python3), SITE (/tmp/site), WHEELS (.whl), SRC (.: the checkout pip
# installs), RUN (/tmp/solar-diffusion-run: checkpoints and the pipeline, left on the node; not
# --out; emptied first unless --resume-from-checkpoint is given), LAUNCH (default $PYTHON; for several GPUs e.g.
# "python3 -m accelerate.commands.launch --multi_gpu --num_processes 8").
set -eu
if [ $# -lt 2 ]; then
    echo "usage: sh training/offline_gpu.sh PACK OUT [train_ddpm.py flags ...]" >&2
    exit 2
fi
pack=$1
out=$2
shift 2
python=${PYTHON:-python3}
site=${SITE:-/tmp/site}
wheels=${WHEELS:-.whl}
src=${SRC:-.}
run=${RUN:-/tmp/solar-diffusion-run}
launch=${LAUNCH:-$python}

install() {
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$@"
}
if ls "$wheels"/*.whl >/dev/null 2>&1; then
    install "$wheels"/*.whl
else
    echo "no wheels in $wheels: the node's own packages must do"
fi
install --no-build-isolation "$src"
# the installed package, not the checkout's solar_diffusion/ folder (half of it: package-dir maps the rest)
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONSAFEPATH=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
case " $* " in
    *" --resume-from-checkpoint"*) ;;  # continue the run in $RUN
    *) rm -rf "$run" ;;  # a fresh run: no checkpoints of an earlier one in the way
esac
# shellcheck disable=SC2086  # LAUNCH is a command line
$launch -m solar_diffusion.training.train_ddpm --dataset "$pack" --out "$run" --logger none --sample-steps 0 "$@"
"$python" -m solar_diffusion.cli export-parts --model "$run/pipeline" --out "$out"
cp "$run/train_summary.json" "$run/losses.jsonl" "$out/"
