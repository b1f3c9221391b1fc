"""Datasets: synthetic videos with temporal and static multiple-choice questions."""
