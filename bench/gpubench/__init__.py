"""The parts of bench/gpu.py (GPU figures in one prepared run, issue #16).

wheels: what the device machine lacks that the service imports (bench/gpu-requirements.txt)
models: the benchmarked graphs, their cards, and LIME's batches composed on the device
bare: the model alone, per precision, batch size and execution mode
engine: LIME and Kernel SHAP end to end, their overhead, reduced-precision agreement
rest: the real service (redis-server, API, workers) on the one device
report: the time budget, the targets, the JSON
"""
