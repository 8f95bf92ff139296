"""The paper's theory (§4, App. D): a linear autoregressive model, pre-trained by SGD then post-trained by STaR.

    mixture.py       the parity mixture D(d, p_cot) in the ±1 encoding, the chain-of-thought reward
    model.py         d + 1 linear predictors on features (x, z x), greedy and sampled decoding
    sgd.py           SGD on every position's regularized logistic loss; pre-training (Theorem 1)
    star.py          STaR rounds on rewarded rollouts (Theorem 2)
    closed_forms.py  calibration, the greedy 1/3 rule, p_{t+1} = 2 p_t / (1 + p_t), rounds to greedy success
    evaluation.py    accuracy, length and sequence probabilities on fresh inputs
    experiments.py   simulation rows with the closed-form prediction beside each measurement
    figures.py       the two theorems as figures (`rlntp theory figure`)
"""
