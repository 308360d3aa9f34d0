"""Fine-grained response-length predictor (RLP), distilled from the target model.

``data``: ShareGPT first turns by prompt id and the reproducible split; ``labels``: the target
model's own greedy response lengths; ``buckets``: bucket arithmetic; ``model``: backbone features
(first L layers, pooled) and the trained heads; ``bounds``: upper bounds (paper's k, calibrated);
``predictor``: ``RLPPredictor`` for the engine's seam; ``evaluate``: the table and the figure;
``cli``: ``label`` / ``train`` / ``eval``.
"""
