#!/usr/bin/env python3
"""Development check of generalisation: renders carrier sentences written for
Hearth (not the generator's frame sets A/B) with the generator's *value*
functions, so the detector meets known value formats in unseen contexts.

    python3 own_frames.py --gen /work/shared/pii/pii_gen.py --seed 1 --n 1000 > own.jsonl

Only values are taken from the generator; nothing here feeds the detector's
word lists.
"""
import argparse
import importlib.util
import json
import random

FRAMES = [
    "From: {PERSON} <{EMAIL}>\nTo: support\nSubject: refund\n\nI was charged twice on {CARD}. Regards, {PERSON}",
    "Can you summarise this note? '{PERSON} ({DOB}) was seen today, hospital number {MRN}, lives at {ADDRESS}.'",
    "name: {PERSON}\nemail: {EMAIL}\nphone: {PHONE}\n",
    "Translate to French: my name is {PERSON} and my mobile is {PHONE}.",
    "Draft a reply to {PERSON}, who wrote from {EMAIL} asking about invoice {invoice}.",
    "The new hire, {PERSON}, needs a laptop; ship it to {ADDRESS}.",
    "Why does curl to {IP} time out? Using token {APIKEY} in the header.",
    "Please verify: holder {PERSON}, IBAN {IBAN}, amount {amount}.",
    "Spreadsheet row: {PERSON}\t{SSN}\t{PHONE}",
    "Is {SSN} a valid SSN format? Asking for my tax form.",
    "Patient: {PERSON}. D.O.B. {DOB}. Medical record #: {MRN}. Chief complaint: {symptom}.",
    "I need to renew passport {PASSPORT} before my trip on {date}; born {DOB}.",
    "log line: user={EMAIL} ip={IP} status=403",
    "Hey it's {PERSON}! new number {PHONE}, save it",
    "Write a cover letter for {PERSON}, {ADDRESS}, {EMAIL}.",
    "Our client {PERSON} (SSN {SSN}) disputes the charge of {amount} on card {CARD}.",
    "Config:\nAPI_KEY={APIKEY}\nHOST={IP}",
    "Billing contact {PERSON} can be reached at {PHONE} or {EMAIL}.",
    "Meeting notes {date}: {PERSON} will follow up with procurement about {topic}.",
    "{{\"customer\": \"{PERSON}\", \"iban\": \"{IBAN}\", \"dob\": \"{DOB}\"}}",
    "Forward the lab report for MRN {MRN} to {EMAIL} by {weekday}.",
    "Passport: {PASSPORT}\nNationality: {country}\nHolder: {PERSON}",
    "The tenant {PERSON} has not paid rent for the flat at {ADDRESS} since {date}.",
    "What's the weather like in {city} next {weekday}?",
    "Summarise the {topic} discussion for the {department} team.",
    "Deploy {version} to {hostname} after {time}; ticket {ticket}.",
    "Compare plans {plan} and enterprise for {n} seats at {amount} each.",
    "Order {order}: {qty} x {product}, delivery window {time}-{time}.",
    "Invoice {invoice} ({amount}) is overdue by {n} days.",
    "Flight {flight} seat {seat} gate {gate}, boarding {time}.",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=1000)
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("pii_gen", a.gen)
    g = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(g)
    rng = random.Random(f"hearth-own-{a.seed}")
    for i in range(a.n):
        frame = rng.choice(FRAMES)
        text, ents = g.render(frame, rng, shout=rng.random() < 0.03)
        print(json.dumps({"id": f"own-{a.seed}-{i:05d}", "text": text, "entities": ents}, ensure_ascii=False))


if __name__ == "__main__":
    main()
