# $REPO: this repository (its .venv) at cd8a13a; $OUT: where the logs go
set -x
cd $REPO && source .venv/bin/activate
export OMP_NUM_THREADS=2
date
python scripts/benchmark.py compare what=sample uncached_length=0 > $OUT/compare_sample_eager.log 2>&1
python scripts/benchmark.py compare what=sample uncached_length=0 compile=true > $OUT/compare_sample_compiled.log 2>&1
python scripts/benchmark.py sample length=512 > $OUT/sample_512_eager.log 2>&1
python scripts/benchmark.py sample length=512 compile=true > $OUT/sample_512_compiled.log 2>&1
date
