"""Evaluation: SQuAD (official semantics), numeric math accuracy, the seeds' retention gate and contest score."""
