"""The audio pipeline: ``decode`` (files -> mono clips, conditioning), ``encode`` (pure
mu-law and frame encoders: numpy/torch only, so training never imports the decoders),
``tags``, ``tempo``, ``builtin`` (rendered chorales), ``prepare``, ``info``. Nothing is
imported here, so ``tunelab.data.audio.encode`` stays light."""
