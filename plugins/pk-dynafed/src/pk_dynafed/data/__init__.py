"""Dynafed's pseudo data: DSA augmentation (:mod:`.dsa`) and its trajectory-matching synthesis
(:mod:`.synthesis`)."""
