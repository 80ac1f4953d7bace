# $REPO: this repository (its .venv); $BEFORE: a worktree at 073a79a (before the trim); $OUT: where the logs go
set -x
cd $REPO && source .venv/bin/activate
export OMP_NUM_THREADS=2
date
PYTHONPATH=$BEFORE/src python $BEFORE/scripts/benchmark.py compare what=train pooling=summary steps=10 > $OUT/before_compare_train_summary.log 2>&1
python scripts/benchmark.py compare what=train pooling=summary steps=10 > $OUT/after_compare_train_summary.log 2>&1
python scripts/benchmark.py compare what=train pooling=mean steps=10 > $OUT/after_compare_train_mean.log 2>&1
python scripts/benchmark.py compare uncached_length=128 > $OUT/after_compare_default.log 2>&1
python scripts/benchmark.py train > $OUT/after_train.log 2>&1
PYTHONPATH=$BEFORE/src python $BEFORE/scripts/benchmark.py train > $OUT/before_train.log 2>&1
python scripts/benchmark.py compare what=sample sample_length=2048 uncached_length=0 repeats=3 > $OUT/after_compare_sample2048.log 2>&1
date
