"""Models (torch): ``eclsr.ECLSR`` and ``cl4srec.CL4SRec``, both pk-seqrec SASRec subclasses."""
