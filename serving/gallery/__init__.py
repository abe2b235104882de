"""The reference gallery: catalogue and listing photos, perceptual hashes and embeddings."""
