"""Expert review: the review web app, Label Studio export/import, and review statistics."""
