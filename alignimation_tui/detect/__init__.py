"""Finding the person in each photo. Face mode: face.py (MTCNN and embeddings), facing.py (is the
face turned?), identity.py (which face is the subject)."""
