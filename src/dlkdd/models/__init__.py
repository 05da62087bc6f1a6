"""Backbone builders (torchvision video nets and the tiny CPU net) and their input statistics."""
