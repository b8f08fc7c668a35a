"""edgeptm's text classifier as a Hugging Face model class: BERT encoder -> mean pooling -> linear.

edgeptm's MiniLM checkpoints put the head on the *mean* of the last hidden states over the
attention mask (the pooling all-MiniLM-L6-v2 was trained with), not on BERT's [CLS] pooler, so no
stock `BertForSequenceClassification` computes the same function. This file is copied into the
Hugging Face directory that `make_hf_dir.py` writes and is registered there through `auto_map`,
so `AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)` -- and with
it Optimum's exporter -- loads exactly the fine-tuned model. The config keeps `model_type: bert`,
so Optimum exports it with its stock `BertOnnxConfig` (inputs input_ids, attention_mask,
token_type_ids; output logits) and its optimizer applies the BERT fusions.

Works with transformers 4.57 (the Optimum venv) and 5.x (the project's venv).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class BertMeanPoolForSequenceClassification(BertPreTrainedModel):
    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        # The same arithmetic as edgeptm.models.classifier.TextClassifier.pool (mean over real tokens).
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
