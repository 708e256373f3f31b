"""A HuggingFace BERT classifier built from a config (no download), for the tests that need a real transformer."""

import lightning.pytorch as pl
import torch
from transformers import BertConfig, BertForSequenceClassification


class TinyBert(pl.LightningModule):
    """Two layers of width ``hidden_size`` over a 40-token vocabulary, a 2 x ``hidden_size`` head; AdamW."""

    def __init__(self, hidden_size: int = 16, lr: float = 1e-2, weight_decay: float = 0.01):
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        torch.manual_seed(0)
        self.bert = BertForSequenceClassification(BertConfig(
            vocab_size=40, hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=2 * hidden_size, max_position_embeddings=16, num_labels=2))

    def training_step(self, batch, batch_idx):
        ids, labels = batch
        return self.bert(input_ids=ids, labels=labels).loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
