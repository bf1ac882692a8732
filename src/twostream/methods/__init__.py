"""One folder per paper: everything COTS, COOKIE or VLDeformer adds to the generic core lives here.

* :mod:`twostream.methods.cots` — momentum queues, noise filter, MLM/MVM, KL alignment, VQ-VAE tokenizer;
* :mod:`twostream.methods.cookie` — weight-sharing transformer, frozen teachers, knowledge sharing;
* :mod:`twostream.methods.vldeformer` — single-stream model, its decomposition, bi-modal hard negatives.

The core (encoder, ``heads`` contract, in-batch contrastive, towers, metrics, data, CLI) imports
nothing from here; configs name these classes by their paths.
"""
