"""pk-actsr: AC-TSR attention calibration on pk-seqrec's SASRec and BERT4Rec (heavy code is imported lazily)."""
