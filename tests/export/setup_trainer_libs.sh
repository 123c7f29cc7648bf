#!/usr/bin/env bash
# Installs the trainer libraries the export is checked against (tests/export/test_export_trainers.py)
# into a directory of their own, without their dependencies: TRL's data_utils and verl's math
# scorer import without torch (a torch wheel from PyPI is several GB of CUDA), so they run here on
# CPU; importing `trl` or `verl` as a whole does not. Prints the directory, for PYTHONPATH:
#   PYTHONPATH=$(bash tests/export/setup_trainer_libs.sh) PDR_REQUIRE_TRAINER_LIBS=1 \
#       python -m pytest tests/export/test_export_trainers.py
# Idempotent: a second run installs nothing. The versions are those docs/rl.md names as checked.
set -euo pipefail
DIR="${PDR_TRAINER_LIBS_DIR:-$HOME/.cache/pdr-trainer-libs}"
if [ ! -f "$DIR/.installed-trl1.16.0-verl0.9.1" ]; then
    echo "trainer libs: installing TRL 1.16.0, verl 0.9.1 (+ transformers, tokenizers, safetensors) into $DIR" >&2
    python -m pip install --quiet --no-deps --target "$DIR" --upgrade \
        trl==1.16.0 verl==0.9.1 transformers==5.25.0 tokenizers==0.23.3 safetensors==0.8.0 >&2
    touch "$DIR/.installed-trl1.16.0-verl0.9.1"
fi
echo "$DIR"
