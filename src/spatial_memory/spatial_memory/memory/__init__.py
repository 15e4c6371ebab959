"""The spatial memory: an image encoder, the Kinaema recurrent latent memory and its baselines, training
data and metrics, and the MemoryEngine the nodes and the pipeline use."""
