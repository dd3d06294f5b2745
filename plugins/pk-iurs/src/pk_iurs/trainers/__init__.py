"""The streaming protocol and one trainer per incremental-update strategy.

``base``: the protocol (``StreamTrainer.fit``) and block testing; ``memory``: replay memories
and the strategies' loss terms; ``baselines``: fine-tuning (IU) and full / windowed retraining
(BURS); ``replay``: reservoir (SPMF) and exemplar replay (ADER); ``distill``: IncCTR-style
distillation; ``regularise``: EWC / L2; ``sml`` and ``asmg``: the meta-learning strategies.
"""

from pk_iurs.trainers.asmg import ASMGTrainer
from pk_iurs.trainers.base import StreamTrainer, block_scores, summarise, test_block
from pk_iurs.trainers.baselines import FineTuneTrainer, FullRetrainTrainer
from pk_iurs.trainers.distill import DistillTrainer
from pk_iurs.trainers.regularise import EWCTrainer
from pk_iurs.trainers.replay import ADERTrainer, ReservoirReplayTrainer
from pk_iurs.trainers.sml import SMLTrainer

__all__ = ["ASMGTrainer", "ADERTrainer", "DistillTrainer", "EWCTrainer", "FineTuneTrainer", "FullRetrainTrainer",
           "ReservoirReplayTrainer", "SMLTrainer", "StreamTrainer", "block_scores", "summarise", "test_block"]
