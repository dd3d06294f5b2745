"""pk-eclsr: ECL-SR and a CL4SRec-style contrastive SASRec on top of pk-seqrec."""
