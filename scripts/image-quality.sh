#!/usr/bin/env bash
# The Space image's own quality report, made while the image is built (after harness.prepare): the first N prompts
# of assets/quality_prompts.json through every row and both int8 recipes on the model's real weights, on the
# builder's CPU, written to results/ where the page's "Quality report" tab and the int8 row's recipe choice read it.
#   scripts/image-quality.sh N     (N = QUALITY_PROMPTS; 0 makes none)
# Under the start's environment (runtime-env.sh: threads, jemalloc, the Hugging Face cache). The model comes from
# SBS_MODEL; QUALITY_JUDGE names the CLIP judge (a hub id, or a local copy for a build without the Hub).
# Makes no report, and the build goes on, for a random-weight stand-in (its report would choose nothing) and where
# the model or the judge is out of reach; any other failure stops the build.
set -euo pipefail
cd "$(dirname "$0")/.."
prompts=${1:-0}
if [ "$prompts" -le 0 ]; then
  echo "image-quality: QUALITY_PROMPTS=0: no quality report (the int8 row runs the quality-first hybrid recipe)"
  exit 0
fi
case "${SBS_MODEL:-}" in
  "" | tiny | sd15-standin)
    echo "image-quality: ${SBS_MODEL:-no model} is no real model: no quality report (a stand-in's chooses nothing)"
    exit 0 ;;
esac
# shellcheck source=scripts/runtime-env.sh
source scripts/runtime-env.sh
status=0
"${PYTHON:-python}" benchmark.py --quality --strict true --quality-prompts "$prompts" \
  ${QUALITY_JUDGE:+--quality-judge "$QUALITY_JUDGE"} || status=$?
if [ "$status" = 3 ]; then  # benchmarking.quality.OUT_OF_REACH: the model or the judge cannot be reached
  echo "image-quality: no quality report (out of reach, above): the int8 row runs the quality-first hybrid recipe"
  exit 0
fi
exit "$status"
