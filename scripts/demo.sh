#!/usr/bin/env bash
# The main job: install what is missing, build, then check a bundled example
# spec, show its attn IR and run it on the CPU on seeded random inputs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" > "$root/build-demo.log" 2>&1 || { cat "$root/build-demo.log"; exit 1; }
rm -f "$root/build-demo.log"

attnc="$root/build/bin/attnc"
example="$root/examples/alibi_gqa.attn"
echo "== $example"
cat "$example"
echo
echo "== attnc check"
"$attnc" check "$example"
echo
echo "== attnc emit --stage=attn"
"$attnc" emit "$example"
echo
echo "== attnc run --backend=cpu"
"$attnc" run "$example" --backend=cpu --dim B=2 --dim Hq=8 --dim Hk=2 \
  --dim N=256 --dim M=256 --seed 0 --output-dir "$root/build/demo-out"
echo
echo "== attnc compile --target=sm_90a --emit=ptx (tensor-core instructions of the kernel)"
"$attnc" compile "$example" --target=sm_90a --emit=ptx -o "$root/build/demo-out/alibi.ptx"
grep -m1 -E "^\.target" "$root/build/demo-out/alibi.ptx"
for instruction in cp.async.cg ldmatrix.sync.aligned.m8n8.x4.trans mma.sync.aligned.m16n8k16; do
  echo "  $(grep -c "$instruction" "$root/build/demo-out/alibi.ptx") x $instruction"
done
echo
echo "== attnc run --backend=gpu-emulator (the same GPU tile program, emulated on the CPU)"
"$attnc" run "$example" --backend=gpu-emulator --dim B=1 --dim Hq=4 --dim Hk=2 \
  --dim N=100 --dim M=100 --seed 0
