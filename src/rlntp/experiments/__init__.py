"""The paper's figures as recipes: each composes the stages (pretrain, posttrain) and draws its figure."""
