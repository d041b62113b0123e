"""The backup/restore benchmark: `bench/run.sh` (python -m bench) and `bench/profile.sh`. Not shipped, not tests."""
