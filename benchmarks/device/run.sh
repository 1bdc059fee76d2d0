#!/bin/bash
# The GPU benchmark of issue 15, as one device call: wheels, two demo worlds, the apply cases.
# Carried: .whl (the wheels the GPU image lacks, see docs/benchmarks.md) and gpu-bench (the two trained
# run directories mlp/ and lstm/ of benchmarks/apply_throughput.py, copied from its work directory).
#   RES=2,1 CASES=... BENCH_S=330 PROFILE=1 bash benchmarks/device/run.sh
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 UPSCALE_CACHE=/tmp/ucache MPLBACKEND=Agg
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; lscpu | grep -E "Model name|^CPU\(s\)"; nproc;
  python3 -c "import sys, torch, xarray, pandas, numpy, zarr, dask, netCDF4, typer; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0)); print('xarray', xarray.__version__, 'pandas', pandas.__version__, 'numpy', numpy.__version__, 'zarr', zarr.__version__, 'dask', dask.__version__)"; } 2>&1 | tee $OUT/machine.txt
python3 -c "import upscale.apply, upscale.pipeline, upscale.cluster" || exit 4
W=/tmp/gb; RES=${RES:-2,1}; cp -r gpu-bench/mlp gpu-bench/lstm $W/ 2>/dev/null || { mkdir -p $W; cp -r gpu-bench/mlp gpu-bench/lstm $W/; }
for r in ${RES//,/ }; do mkdir -p $W/res-$r; python3 benchmarks/device/world.py $W/res-$r/world $r > $OUT/world$r.log 2>&1 & done; wait
echo "worlds written after $(( $(date +%s) - T0 )) s"
CASES=${CASES:-raw_io,prepare,compute@lstm@bf16,lstm@prepared@bf16,lstm@prepared@bf16@workers8,lstm@prepared@cpu@workers16,compute@lstm,lstm@prepared,compute@lstm@stacked@bf16,lstm@prepared@stacked@bf16,compute@mlp,mlp@prepared}
timeout ${BENCH_S:-330} python3 benchmarks/apply_throughput.py --workdir $W --device cuda --resolutions $RES --cases $CASES 2>&1 | tee $OUT/bench.log
cp $W/results.json $OUT/ 2>/dev/null
if [ -n "$PROFILE" ]; then  # where the GPU compute limit's time goes
  r=${RES##*,}; timeout 60 python3 -m cProfile -o $OUT/compute.prof benchmarks/apply_throughput.py --child compute@lstm \
    --run-dir $W/res-$r/lstm --out $W/prof --device cuda > /dev/null
  python3 -c "import pstats; pstats.Stats('$OUT/compute.prof').sort_stats('tottime').print_stats(25)" | tail -40
fi
echo "done after $(( $(date +%s) - T0 )) s"
