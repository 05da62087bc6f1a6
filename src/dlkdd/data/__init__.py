"""Video decoding, sampling, the frame cache, dataset importers, landed footage and synthetic dark footage."""
