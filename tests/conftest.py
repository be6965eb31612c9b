import os

# One thread per test process, as in the workflow's jobs: the suite shares a small machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# No test may reach a model hub: loading code must work from local directories.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

# The longest files first: with several workers (make test), a long file collected last would
# run alone at the end while the other workers sit idle.
_FIRST = ("test_paper_shape.py", "test_workflow.py", "test_slurm.py", "test_faults.py", "test_experiments.py",
          "test_gpu_check.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(_FIRST)))  # stable: a file's own order stays
