"""Scale-out on ``torch.distributed``: the same commands under ``torchrun``.

- :mod:`convlens.parallel.dist`: process group from torchrun's environment (gloo on CPU, NCCL on
  GPU, a timeout on every collective), rank/world size, and :func:`~convlens.parallel.dist.gather`,
  the one collective the analysis uses; it carries each rank's error so that a failing rank stops
  the job with one line naming it.
- :mod:`convlens.parallel.merge`: exact merging of running statistics (Chan et al.) and of
  per-image scores placed back in dataset order.
- :mod:`convlens.parallel.stream`: a streaming image-folder ``torch.utils.data.Dataset``.
- :mod:`convlens.analysis.model.shard`: the sharded activation pass (``DistributedSampler``, padding
  dropped by position) behind ``convlens analyze``.

No process pool, socket protocol or rendezvous of our own: torchrun starts the processes and
c10d does the rendezvous. Without torchrun the world size is 1 and every collective is the identity.
"""
