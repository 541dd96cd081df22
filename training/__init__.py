"""What a training run is made of beside the algorithm (solver.py): the loop that drives it
(loop), the checkpoints it leaves and the generator read back from them (checkpoint), and the
run directory that holds them (run_dir)."""
