"""Images as records: procedural defect images on real textures, image quality checks,
image embeddings. Modules import their heavy dependencies (scikit-image, imagehash,
transformers) lazily or on import of the module itself, never from this package root, so
text-only runs never pay for them (``pip install synthtune[vision]``).
"""
